"""COIN and DiDeMo metrics at their real test-set sizes: this package's code vs the original's arithmetic
(``tempclr.testing.original``), in the same run.

Data (seeded):

* COIN: 2,797 test videos (COIN's testing subset) of 30..300 seconds (uniform; about 460,000 seconds in all),
  labels 0..778 with about 40 % background; predictions equal to the truth on half the seconds.  Timed:
  ``COINActionSegmentationMetric.compute_metrics`` vs the original's ``1 - sum(outputs != targets) / n``; and the
  per-video window averaging of the predictor (windows of 32 s every 16 s, 779 classes) vs the original's loop.
* DiDeMo: 4,021 test descriptions over 1,004 videos (3..5 annotators each), scores ``[4021, 21]`` drawn from 6
  values (ties) with 5 % of moments without features.  Timed: ``DiDeMoMetric.compute_metrics`` corrected (from the
  scores) and with ``eval.metric_compat: original`` vs the original metric's Python loops (whose numbers compat must
  equal: checked); as the predictor calls it (the annotated moments parsed once by ``DiDeMoMetaProcessor``,
  passed as ``annotations``) and, for the corrected one, also from the records alone (parsing the ``times`` of
  every description again, a Python pass over 16,000 lists).

Each timing is the best of ``--rounds``.

    .venv/bin/python benchmarks/bench_coin_didemo.py [--rounds 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from timing import best_time

from tempclr.evaluators.coin import COINActionSegmentationMetric, _merge_windows
from tempclr.evaluators.didemo import MOMENTS, DiDeMoMetric, ranked_moments
from tempclr.processors.didemo import annotated_moments
from tempclr.processors.windows import sliding_windows
from tempclr.testing.original import original_coin_frame_acc, original_coin_merge_windows, original_didemo_eval

COIN_VIDEOS = 2797
DIDEMO_DESCRIPTIONS, DIDEMO_VIDEOS = 4021, 1004


def coin_case(seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(30, 301, COIN_VIDEOS)
    n = int(lengths.sum())
    targets = rng.integers(1, 779, n) * (rng.random(n) < 0.6)
    outputs = np.where(rng.random(n) < 0.5, targets, rng.integers(0, 779, n))
    return lengths, outputs, targets


def didemo_case(seed: int = 0):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, (DIDEMO_DESCRIPTIONS, 21)).astype(np.float64)
    scores[rng.random(scores.shape) < 0.05] = -np.inf
    scores[:, 0] = np.maximum(scores[:, 0], 0)
    targets = [{"video": f"v{int(rng.integers(DIDEMO_VIDEOS))}",
                "times": [list(MOMENTS[m]) for m in rng.integers(0, 21, int(rng.integers(3, 6)))]}
               for _ in range(DIDEMO_DESCRIPTIONS)]
    return scores, targets


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []

    lengths, outputs, targets = coin_case()
    metric = COINActionSegmentationMetric({})
    ours, result = best_time(lambda: metric.compute_metrics(outputs=outputs, targets=targets), args.rounds)
    theirs, original = best_time(lambda: original_coin_frame_acc(outputs, targets), args.rounds)
    assert result["frame_acc"] == original
    rows.append(("COIN frame accuracy", f"{COIN_VIDEOS} videos, {len(targets):,} s", ours, theirs))

    videos = lengths[:200]
    windows = []
    for video_len in videos.tolist():
        starts, sizes = sliding_windows(video_len, 16, 32)
        vmasks = torch.arange(32)[None, :] < torch.from_numpy(sizes)[:, None]
        windows.append((video_len, torch.randn(len(starts), 32, 779), vmasks))
    ours, merged = best_time(lambda: [_merge_windows(lg, vm, t, 16, 32, "bench") for t, lg, vm in windows],
                             args.rounds)
    theirs, expected = best_time(lambda: [original_coin_merge_windows(lg[vm], t, 16, 32) for t, lg, vm in windows],
                                 args.rounds)
    assert all(torch.equal(a, b) for a, b in zip(merged, expected))
    scale = COIN_VIDEOS / len(videos)
    rows.append(("COIN window averaging (predictor)", f"{COIN_VIDEOS} videos (200 timed, scaled)", ours * scale,
                 theirs * scale))

    scores, records = didemo_case()
    rankings = ranked_moments(scores)
    corrected = DiDeMoMetric({})
    compat = DiDeMoMetric({"eval": {"metric_compat": "original"}})
    index, present = annotated_moments(records)  # what DiDeMoMetaProcessor parses once and the predictor passes on
    parsed = {"index": index, "present": present}
    ours_parsed, _ = best_time(lambda: corrected.compute_metrics(outputs=rankings, targets=records, scores=scores,
                                                                 annotations=parsed), args.rounds)
    ours, _ = best_time(lambda: corrected.compute_metrics(outputs=rankings, targets=records, scores=scores),
                        args.rounds)
    ours_compat, got = best_time(lambda: compat.compute_metrics(outputs=rankings, targets=records, scores=scores,
                                                                annotations=parsed), args.rounds)
    theirs, original = best_time(lambda: original_didemo_eval(rankings, records), args.rounds)
    assert (got["rank1"], got["rank5"], got["miou"]) == original
    size = f"{DIDEMO_DESCRIPTIONS:,} descriptions x 21 moments"
    rows.append(("DiDeMo Rank@1/5, mIoU (corrected)", size, ours_parsed, theirs))
    rows.append(("DiDeMo corrected, times re-read", size, ours, theirs))
    rows.append(("DiDeMo Rank@1/5, mIoU (compat original)", size, ours_compat, theirs))

    print(f"{'what':42s} {'size':38s} {'tempclr':>10s} {'original':>10s} {'speed-up':>9s}")
    for what, size, ours, theirs in rows:
        print(f"{what:42s} {size:38s} {ours * 1e3:8.2f}ms {theirs * 1e3:8.2f}ms {theirs / ours:8.1f}x")
    results = {what: {"size": size, "tempclr_s": ours, "original_s": theirs} for what, size, ours, theirs in rows}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
