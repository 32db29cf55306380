#!/usr/bin/env python
"""Zero-shot YouCook2 retrieval on the demo: the demo-pretrained VideoCLIP against an untrained model and chance.

Every model is evaluated exactly as ``python locallaunch.py CONFIG --jobtype local_predict`` evaluates one (the
config's data loader, predictor and metric): the clip-level config (``RetrievalMetric``) always, and the full-video
configs (caption average / DTW / OTAM, and with background windows) when this checkout has their metrics.  The
untrained model is the config's model freshly initialised (the tiny demo BERT's weights, a random ``videomlp``),
saved as a checkpoint first so that both go through the same checkpoint loading.

Beside each number: ``chance`` (the expected recall of random scores: ``k / N``, median rank ``(N + 1) / 2``) and
``ceiling`` (the best any model can reach in expectation when several queries read exactly the same: a caption
shared by ``g`` clips gives those ``g`` clips the same scores in every such query, so on average
``min(k, g) / g`` of them can be found in the top ``k``; the demo's sentences are its steps' phrases, so clips of
the same step read the same).

Writes under ``--out`` (``runs/demo/youcook_zs``)::

    untrained/checkpoint_untrained.pt        the freshly initialised model
    eval/<config>_<model>.npy                the score matrix of each evaluation (eval.save_path of the config)
    retrieval_<video>.png                    top-5 videos for one video's captions, DTW path of the best match
    report.json                              every number printed

Needs ``data/demo`` (``make demo-data``) and the pretrained checkpoint (``make demo`` trains it).
Usage: ``python scripts/youcook_demo_report.py [--config ...] [--fullvideo-config ...] [--bg-config ...]
[--out ...] [--query VIDEO]``
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tempclr.demo import pretrained_checkpoint  # noqa: E402
from tempclr.demo.compare import ceiling, chance, evaluate  # noqa: E402
from tempclr.evaluators.retrieval_plot import caption_average_scores, hard_dtw_path, plot_retrieval  # noqa: E402
from tempclr.tasks.task import Task  # noqa: E402
from tempclr.utils.checkpoint import save_untrained_checkpoint  # noqa: E402
from tempclr.utils.fileio import numpy_to_json, write_json_atomic  # noqa: E402
from tempclr.utils.load_config import load_config  # noqa: E402
from tempclr.utils.registry import registered  # noqa: E402

CLIP_CONFIG = "configs/demo/test_youcook_zs.yaml"
FULLVIDEO_CONFIG = "configs/demo/test_youcook_fullvideo_zs.yaml"
BG_CONFIG = "configs/demo/test_youcook_fullvideo_bg_zs.yaml"
MODELS = ("untrained", "pretrained")
TOP = 5


# ------------------------------------------------------------------------------------------ caption keys


def video_caption_keys(texts: Sequence[str], video_ids: Sequence[str]) -> List[tuple]:
    """One key per video (first-appearance order): the tuple of its captions, clip-level outputs
    (``texts[i]`` is the caption of clip ``i`` of video ``video_ids[i]``)."""
    captions: Dict[str, list] = {}
    for text, video_id in zip(texts, video_ids):
        captions.setdefault(video_id, []).append(text)
    return [tuple(c) for c in captions.values()]


def bg_caption_keys(texts: Sequence[str], text_lengths: Sequence[int]) -> List[tuple]:
    keys, offset = [], 0
    for length in text_lengths:
        keys.append(tuple(texts[offset:offset + length]))
        offset += length
    return keys


# ------------------------------------------------------------------------------------------ table


def table_rows(block: str, result: Dict[str, Any], chance_values: Dict[str, float],
               ceiling_values: Dict[str, float]) -> List[Dict[str, Any]]:
    rows = []
    for name in result["metric"].metric_names:
        if name not in result["metrics"]["pretrained"]:
            continue
        rows.append({"block": block, "metric": name,
                     **{model: float(result["metrics"][model][name]) for model in MODELS},
                     "chance": chance_values.get(name), "ceiling": ceiling_values.get(name)})
    return rows


def print_table(rows: List[Dict[str, Any]], header: str) -> None:
    print(header)
    print(f"{'':34s} {'untrained':>10s} {'pretrained':>11s} {'chance':>8s} {'ceiling':>8s}")
    for row in rows:
        cells = [f"{row[key]:.4f}" if isinstance(row[key], float) else "-" for key in
                 ("untrained", "pretrained", "chance", "ceiling")]
        label = f"{row['block']} {row['metric']}"
        print(f"{label:34s} {cells[0]:>10s} {cells[1]:>11s} {cells[2]:>8s} {cells[3]:>8s}")


# ------------------------------------------------------------------------------------------ picture


def write_picture(outputs: Dict[str, Any], dataset, query: Optional[str], out_dir: str) -> Dict[str, Any]:
    """Top-5 videos for the captions of ``query`` (default: the first video) by caption-average score, and the
    hard DTW path over the distance grid ``1 - scores`` of its captions against the best match's clips."""
    scores, texts, video_ids = outputs["outputs"], outputs["texts"], outputs["video_ids"]
    query = query or video_ids[0]
    rows = [i for i, video_id in enumerate(video_ids) if video_id == query]
    if not rows:
        raise KeyError(f"--query {query!r} is not a video of the evaluated set (e.g. {video_ids[0]!r})")
    full_ranking = sorted(caption_average_scores(scores, rows, video_ids).items(), key=lambda kv: -kv[1])
    ranking = full_ranking[:TOP]
    own_rank = 1 + [name for name, _ in full_ranking].index(query)
    best = ranking[0][0]
    columns = [j for j, video_id in enumerate(video_ids) if video_id == best]
    distance = 1.0 - scores[np.ix_(rows, columns)]
    path = hard_dtw_path(distance)
    dtw_cost = float(sum(distance[i, j] for i, j in path))
    records = dataset.meta_processor.data
    clips = [f"{records[j].start}-{records[j].end}" for j in columns]
    out_path = os.path.join(out_dir, f"retrieval_{query}.png")
    title = (f"demo-pretrained model: the {len(rows)} captions of {query} against {len(full_ranking)} videos; "
             f"its own video ranks {own_rank}\nbest match {best}: hard DTW cost {dtw_cost:.3f} over "
             f"{len(path)} path cells ({dtw_cost / distance.size:.4f} per grid cell)")
    plot_retrieval(query, ranking, distance, path, [texts[i] for i in rows], clips, out_path, title,
                   score_name="caption average score (mean over captions of the best clip)")
    return {"path": out_path, "query": query, "top": ranking, "own_rank": own_rank, "best": best, "dtw_path": path,
            "dtw_cost": dtw_cost}


# ------------------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=CLIP_CONFIG, help=f"clip-level config (default {CLIP_CONFIG})")
    parser.add_argument("--fullvideo-config", default=FULLVIDEO_CONFIG)
    parser.add_argument("--bg-config", default=BG_CONFIG)
    parser.add_argument("--out", default="runs/demo/youcook_zs")
    parser.add_argument("--query", default=None, help="video whose captions the picture queries (default: first)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the untrained model (default 0)")
    args = parser.parse_args(argv)

    config = load_config(config_file=args.config)
    pretrained_path = pretrained_checkpoint(config, args.config)
    torch.manual_seed(args.seed)
    untrained_path = save_untrained_checkpoint(
        Task.config_task(config).build_model(), os.path.join(args.out, "untrained", "checkpoint_untrained.pt"))
    checkpoints = {"untrained": untrained_path, "pretrained": pretrained_path}

    clip = evaluate(args.config, checkpoints, "clip")
    out = clip["outputs"]["pretrained"]
    n_clips, n_videos = out["outputs"].shape[1], len(set(out["video_ids"]))
    rows = table_rows("clip", clip, chance(clip["metric"].metric_names, n_clips),
                      ceiling(out["texts"], clip["metric"].metric_names))
    blocks = {"clip": {"config": args.config, "metrics": clip["metrics"]}}
    available = registered("metric")
    for block, path, metric_name in (("full video", args.fullvideo_config, "FullVideoRetrievalMetric"),
                                     ("full video + background", args.bg_config, "FullVideoBGRetrievalMetric")):
        if metric_name not in available:
            print(f"({metric_name} is not in this checkout: the '{block}' block of {path} is skipped)")
            continue
        result = evaluate(path, checkpoints, block.replace(" + ", "_").replace(" ", ""))
        names = result["metric"].metric_names
        outputs = result["outputs"]["pretrained"]
        keys = (bg_caption_keys(outputs["texts"], outputs["text_lengths"]) if "text_lengths" in outputs
                else video_caption_keys(outputs["texts"], outputs["video_ids"]))
        rows += table_rows(block, result, chance(names, len(keys)), ceiling(keys, names))
        blocks[block] = {"config": path, "metrics": result["metrics"]}
    picture = write_picture(out, clip["dataset"], args.query, args.out)
    header = (f"YouCook2 text-to-video retrieval on the demo set ({n_clips} clips with captions, {n_videos} "
              f"videos): untrained vs demo-pretrained VideoCLIP; chance = random scores, ceiling = best reachable "
              "when captions read the same")
    print_table(rows, header)
    print(f"picture: {picture['path']} (top {TOP} for {picture['query']}: "
          + ", ".join(f"{name} {score:.3f}" for name, score in picture["top"]) + ")")
    write_json_atomic(os.path.join(args.out, "report.json"), {
        "checkpoints": checkpoints, "clips": n_clips, "videos": n_videos, "table": rows, "blocks": blocks,
        "picture": {key: value for key, value in picture.items()}}, default=numpy_to_json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
