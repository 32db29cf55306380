"""Generate the demo data set (a synthetic HowTo100M-style world, its shards, a CrossTask release, a YouCook2
evaluation set and a tiny BERT) deterministically.

Everything is written into a temp folder next to ``--out`` that replaces ``--out`` only when complete, so a killed
run never leaves a half-written data set.  The shards are made by the real pipeline: ``scripts/shard_feature.py``
then ``scripts/pretokenization.py``.  Layout under ``--out`` (default ``data/demo``)::

    bert/                          tiny BERT: vocab.txt, tokenizer files, config.json, model.safetensors
    how2/how2_s3d_{train,val}.lst  one video id per line
    how2/raw_caption.json          id -> {"start": [...], "end": [...], "text": [...]}
    how2/demo_steps.json           id -> {"task": id, "steps": [[step_index, start_s, end_s], ...]} (ground truth)
    feat/feat_how2_s3d/<id>.npy    per-video features [T, 512] float16
    feat/feat_how2_s3d_shard/      {train,val}_<k>_{starts,data}.npy, {train,val}_meta.pkl,
                                   raw_caption_dedup.demo.{train,val}_<k>.{startends,caps_ids}_{starts,data}.npy
    crosstask/                     a CrossTask-format release (tempclr/demo/crosstask.py)
    youcook/                       a YouCook2-format evaluation set: youcook_val.pkl,
                                   youcookii_annotations_trainval.json, features/ (tempclr/demo/youcook.py)
    world.json                     the world (tasks, steps, seed) and how this set was drawn from it

Usage: ``python scripts/make_demo_data.py --out data/demo [--seed 0] [--n-train 384] [--n-val 64]
[--youcook-per-task 8]``
"""
from __future__ import annotations

import argparse
import json
import os
import time

from tempclr.demo.bert import write_tiny_bert
from tempclr.demo.crosstask import write_crosstask_release
from tempclr.demo.how2 import write_demo_how2
from tempclr.demo.world import World
from tempclr.demo.youcook import write_youcook_set
from tempclr.utils.fileio import atomic_dir
from tempclr.processors.pretokenization import pretokenize
from tempclr.processors.sharding import shard_features

__all__ = ["make_demo_data", "TEXT_PREFIX"]

TEXT_PREFIX = "raw_caption_dedup.demo."


def _build(folder: str, seed: int, n_train: int, n_val: int, shard_size: int, youcook_per_task: int) -> dict:
    """Write the whole demo set into ``folder``; returns counts for the summary."""
    world = World(seed)
    bert = write_tiny_bert(os.path.join(folder, "bert"), world.text_corpus(), seed)
    how2_dir = os.path.join(folder, "how2")
    feat_dir = os.path.join(folder, "feat", "feat_how2_s3d")
    shard_dir = os.path.join(folder, "feat", "feat_how2_s3d_shard")
    ids = write_demo_how2(world, how2_dir, feat_dir, n_train, n_val)
    metas = shard_features(feat_dir, os.path.join(how2_dir, "how2_s3d_train.lst"),
                           os.path.join(how2_dir, "how2_s3d_val.lst"), shard_dir, shard_size)
    n_captions = pretokenize(os.path.join(how2_dir, "raw_caption.json"), os.path.join(folder, "bert"), shard_dir,
                             prefix=TEXT_PREFIX)
    crosstask = write_crosstask_release(world, os.path.join(folder, "crosstask"), seed=seed, videos_per_task=14)
    youcook = write_youcook_set(world, os.path.join(folder, "youcook"), seed=seed, videos_per_task=youcook_per_task)
    description = world.to_json()
    description["crosstask"] = crosstask
    description["youcook"] = {key: value for key, value in youcook.items() if key != "truth"}
    description["how2"] = {"n_train": n_train, "n_val": n_val, "shard_size": shard_size, "text_prefix": TEXT_PREFIX}
    with open(os.path.join(folder, "world.json"), "w", encoding="utf-8") as f:
        json.dump(description, f, indent=1)
    return {"videos": {split: len(v) for split, v in ids.items()},
            "shards": {split: len(meta) for split, meta in metas.items()},
            "captions": n_captions, "vocab_size": bert["vocab_size"], "youcook_videos": youcook["videos"]}


def _check_replaceable(out: str) -> None:
    if os.path.lexists(out) and not (os.path.isdir(out) and (not os.listdir(out)
                                                             or os.path.isfile(os.path.join(out, "world.json")))):
        raise FileExistsError(f"{out} exists and is not a demo data folder (no world.json); choose another --out "
                              "or remove it yourself")


def _folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder) for name in names)


def make_demo_data(out: str = "data/demo", seed: int = 0, n_train: int = 384, n_val: int = 64,
                   shard_size: int = 128, youcook_per_task: int = 8) -> dict:
    """Generate the demo set into ``out`` (replacing an earlier demo set there); returns a summary dict with
    ``videos``, ``shards``, ``captions`` per split, ``vocab_size``, ``bytes`` and ``seconds``.
    ``youcook_per_task``: YouCook2-format evaluation videos per world task."""
    start = time.perf_counter()
    out = os.path.abspath(out)
    _check_replaceable(out)
    with atomic_dir(out) as tmp:
        summary = _build(tmp, seed, n_train, n_val, shard_size, youcook_per_task)
    summary["bytes"] = _folder_bytes(out)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/demo", help="output folder (default data/demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=384, help="train videos (default 384)")
    parser.add_argument("--n-val", type=int, default=64, help="val videos (default 64)")
    parser.add_argument("--shard-size", type=int, default=128, help="videos per shard (default 128)")
    parser.add_argument("--youcook-per-task", type=int, default=8,
                        help="YouCook2-format evaluation videos per task (default 8: 64 videos)")
    args = parser.parse_args(argv)
    summary = make_demo_data(args.out, args.seed, args.n_train, args.n_val, args.shard_size, args.youcook_per_task)
    print(f"demo data in {args.out}: {json.dumps(summary)}")


if __name__ == "__main__":
    main()
