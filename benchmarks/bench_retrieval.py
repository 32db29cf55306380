"""YouCook2 full-video retrieval metrics at YouCook2-val scale: corrected vs the original arithmetic.

Data (seeded): 436 videos; clip-level: clip counts per video drawn as 3 + Poisson(4.7) capped at 16 (about 3,350
clips), scores [n_clips, n_clips] standard normal float32; background kept: the same caption counts, window counts
drawn from round(Normal(19, 7)) clipped to [max(4, captions), 60] (about 19 windows per video), scores
[n_captions, n_windows].

Timed (best of ``--rounds``, each a full ``compute_metrics``, all three blocks):

* corrected: the default metric (numba pair kernel, :mod:`tempclr.evaluators.fullvideo`); the ``buckets`` and
  ``padded`` engines (the alignment module's ``hard_dtw`` / ``hard_otam`` on batches) are timed too;
* compat: ``eval.metric_compat: original`` (:mod:`tempclr.evaluators.fullvideo_compat`);
* original loop: the original's own structure (``tempclr.testing.original``, the tests' oracle too): one Python
  iteration per video pair building each padded grid with torch, the grids stacked, then the cell-by-cell torch
  recursions over the stack (once, unless ``--skip-original``).  Its metrics must equal compat's exactly
  (checked, as are compat's similarity matrices against it).

    .venv/bin/python benchmarks/bench_retrieval.py [--rounds 3] [--skip-original] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch

from timing import best_time

from tempclr.evaluators.metric import FullVideoBGRetrievalMetric, FullVideoRetrievalMetric
from tempclr.evaluators.fullvideo import ENGINES
from tempclr.testing.original import original_loop_bg, original_loop_clip

N_VIDEOS = 436


def youcook_val_like(seed: int = 0) -> dict:
    """Seeded clip-level and background-kept inputs at YouCook2-val scale (see the module docstring)."""
    rng = np.random.default_rng(seed)
    clips = np.minimum(3 + rng.poisson(4.7, N_VIDEOS), 16)
    windows = np.clip(np.round(rng.normal(19, 7, N_VIDEOS)).astype(np.int64), np.maximum(4, clips), 60)
    ids = [f"vid{v:03d}_{rng.integers(1 << 30):08x}" for v in range(N_VIDEOS)]
    n_clips = int(clips.sum())
    clip_ids = [vid for vid, n in zip(ids, clips) for _ in range(n)]
    return {
        "clip": dict(outputs=rng.standard_normal((n_clips, n_clips)).astype(np.float32), texts=None,
                     video_ids=clip_ids),
        "bg": dict(outputs=rng.standard_normal((n_clips, int(windows.sum()))).astype(np.float32), texts=None,
                   video_ids=ids, text_lengths=clips.tolist(), video_lengths=windows.tolist()),
    }


# ----------------------------------------------------------------------------------------------------------------
def bench(kind: str, data: dict, rounds: int, skip_original: bool) -> dict:
    cls = FullVideoRetrievalMetric if kind == "clip" else FullVideoBGRetrievalMetric
    corrected = cls(None)
    compat = cls({"eval": {"metric_compat": "original"}})
    small = _small(kind, data)
    for metric in (corrected, compat):  # compile or load the numba cache outside the timing
        metric.compute_metrics(**small)
    row: dict = {"kind": kind}
    for engine in ENGINES:
        corrected.engine = engine
        corrected.compute_metrics(**small)
        row[f"corrected_{engine}_s"], metrics = best_time(lambda: corrected.compute_metrics(**data), rounds)
        if engine == "kernel":
            row["corrected"] = metrics
        elif metrics != row["corrected"]:
            raise AssertionError(f"{kind}: engine {engine} gives {metrics}, kernel {row['corrected']}")
    corrected.engine = "kernel"
    row["compat_s"], row["compat"] = best_time(lambda: compat.compute_metrics(**data), rounds)
    if not skip_original:
        if kind == "clip":
            loop = lambda: original_loop_clip(data["outputs"], data["video_ids"])  # noqa: E731
        else:
            loop = lambda: original_loop_bg(data["outputs"], data["video_ids"], data["text_lengths"],  # noqa: E731
                                            data["video_lengths"])
        row["original_loop_s"], (row["original_loop"], sims) = best_time(loop, 1)
        if row["original_loop"] != row["compat"]:
            raise AssertionError(f"{kind}: compat {row['compat']} != original loop {row['original_loop']}")
        compat_sims = (compat.similarities(data["outputs"], data["video_ids"]) if kind == "clip" else
                       compat.similarities(data["outputs"], data["video_ids"], data["text_lengths"],
                                           data["video_lengths"]))
        for key, value in sims.items():
            if not np.array_equal(compat_sims[key], value):
                raise AssertionError(f"{kind}: compat {key} similarities differ from the original loop's")
    return row


def _small(kind: str, data: dict) -> dict:
    if kind == "clip":
        n = 40
        return dict(outputs=data["outputs"][:n, :n], texts=None, video_ids=data["video_ids"][:n])
    caps, wins = sum(data["text_lengths"][:5]), sum(data["video_lengths"][:5])
    return dict(outputs=data["outputs"][:caps, :wins], texts=None, video_ids=data["video_ids"][:5],
                text_lengths=data["text_lengths"][:5], video_lengths=data["video_lengths"][:5])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-original", action="store_true", help="do not time the original's loop structure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    data = youcook_val_like(args.seed)
    clip, bg = data["clip"], data["bg"]
    print(f"videos {N_VIDEOS}, clips {len(clip['video_ids'])} (max {max(bg['text_lengths'])} per video), "
          f"windows {sum(bg['video_lengths'])} (mean {np.mean(bg['video_lengths']):.1f}, max "
          f"{max(bg['video_lengths'])}); load average {os.getloadavg()[0]:.2f}, torch threads "
          f"{torch.get_num_threads()}")
    rows = []
    for kind in ("clip", "bg"):
        row = bench(kind, data[kind], args.rounds, args.skip_original)
        rows.append(row)
        times = "  ".join(f"{engine} {row[f'corrected_{engine}_s']:.3f} s" for engine in ENGINES)
        print(f"[{kind}] corrected: {times}")
        print(f"[{kind}] compat (original arithmetic): {row['compat_s']:.3f} s  "
              f"-> corrected is {row['compat_s'] / row['corrected_kernel_s']:.1f}x faster")
        if "original_loop_s" in row:
            print(f"[{kind}] original loop structure: {row['original_loop_s']:.1f} s  -> corrected is "
                  f"{row['original_loop_s'] / row['corrected_kernel_s']:.0f}x faster, compat "
                  f"{row['original_loop_s'] / row['compat_s']:.0f}x (same metrics and similarities as compat)")
        for name in ("corrected", "compat"):
            print(f"[{kind}] {name}: " + " ".join(f"{k}={v:.4f}" for k, v in row[name].items()))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
