"""YouCook2 full-video retrieval metrics at YouCook2-val scale: corrected vs the original arithmetic.

Data (seeded): 436 videos; clip-level: clip counts per video drawn as 3 + Poisson(4.7) capped at 16 (about 3,350
clips), scores [n_clips, n_clips] standard normal float32; background kept: the same caption counts, window counts
drawn from round(Normal(19, 7)) clipped to [max(4, captions), 60] (about 19 windows per video), scores
[n_captions, n_windows].

Timed (best of ``--rounds``, each a full ``compute_metrics``, all three blocks):

* corrected: the default metric (numba pair kernel, :mod:`tempclr.evaluators.fullvideo`); the ``buckets`` and
  ``padded`` engines (the alignment module's ``hard_dtw`` / ``hard_otam`` on batches) are timed too;
* compat: ``eval.metric_compat: original`` (:mod:`tempclr.evaluators.fullvideo_compat`);
* original loop: the original's own structure, written out here: one Python iteration per video pair building
  each padded grid with torch, the grids stacked, then the cell-by-cell torch recursions over the stack (once,
  unless ``--skip-original``).  Its metrics must equal compat's exactly (checked, as are compat's similarity
  matrices against it).

    .venv/bin/python benchmarks/bench_retrieval.py [--rounds 3] [--skip-original] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from tempclr.evaluators.metric import FullVideoBGRetrievalMetric, FullVideoRetrievalMetric
from tempclr.evaluators.fullvideo import ENGINES

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
# the original's structure: a Python loop over pairs building padded torch grids, then torch cell loops
# ----------------------------------------------------------------------------------------------------------------
def _pad(grid: torch.Tensor, T0: int, T1: int, otam: bool) -> torch.Tensor:
    d0, d1 = T0 - grid.shape[-2], T1 - grid.shape[-1]
    if otam:
        grid = F.pad(grid, (1, 1), "constant", 0)
    grid = F.pad(grid, (0, d1, 0, d0), "constant", float("inf"))
    grid[:, :, -d0 - 1:, -d1:] = 0
    return grid


def _dtw_cells(D: torch.Tensor) -> torch.Tensor:
    R = torch.zeros(D.shape)
    R[:, :, 0, 0] = D[:, :, 0, 0]
    for m in range(1, D.shape[3]):
        R[:, :, 0, m] = D[:, :, 0, m] + R[:, :, 0, m - 1]
    for l in range(1, D.shape[2]):
        R[:, :, l, 0] = D[:, :, l, 0] + R[:, :, l - 1, 0]
    for l in range(1, D.shape[2]):
        for m in range(1, D.shape[3]):
            R[:, :, l, m] = D[:, :, l, m] + torch.minimum(torch.minimum(R[:, :, l - 1, m - 1], R[:, :, l, m - 1]),
                                                          R[:, :, l - 1, m])
    return R[:, :, -1, -1]


def _otam_cells(D: torch.Tensor) -> torch.Tensor:
    R = torch.zeros(D.shape)
    for m in range(1, D.shape[3]):
        R[:, :, 0, m] = D[:, :, 0, m] + R[:, :, 0, m - 1]
    for l in range(1, D.shape[2]):
        R[:, :, l, 1] = D[:, :, l, 1] - torch.minimum(torch.minimum(R[:, :, l - 1, 0], R[:, :, l - 1, 1]),
                                                      R[:, :, l, 0])
        for m in range(2, D.shape[3] - 1):
            R[:, :, l, m] = D[:, :, l, m] + torch.minimum(R[:, :, l - 1, m - 1], R[:, :, l, m - 1])
        R[:, :, l, -1] = D[:, :, l, -1] + torch.minimum(torch.minimum(R[:, :, l - 1, -2], R[:, :, l - 1, -1]),
                                                        R[:, :, l, -2])
    return R[:, :, -1, -1]


def _argsort_recall(scores: np.ndarray) -> list[float]:
    order = np.argsort(scores, 1)
    gts = np.arange(len(scores))
    return [float(np.mean(order[:, -1] == gts))] + [float(np.mean([g in p for g, p in zip(gts, order[:, -k:])]))
                                                     for k in (5, 10)]


def _blocks(position_ids: list, videos: list) -> list[list[int]]:
    return [[i for i, x in enumerate(position_ids) if video in x] for video in videos]


def _metrics(caption_average, dtw, otam) -> dict:
    out = {}
    for prefix, scores in (("", caption_average), ("DTW-", dtw), ("OTAM-", otam)):
        out.update({f"{prefix}R{k}": v for k, v in zip((1, 5, 10), _argsort_recall(scores))})
    return out


def original_loop_clip(outputs: np.ndarray, video_ids: list, **_) -> tuple[dict, dict]:
    """The clip-level full-video metric as the original ran it (videos in first-appearance order)."""
    videos = list(dict.fromkeys(video_ids))
    inds = _blocks(video_ids, videos)
    best = np.stack([np.max(outputs[:, v], axis=1) for v in inds], 1)
    caption_average = np.stack([np.mean(best[v, :], axis=0) for v in inds], 0)
    T = max(len(v) for v in inds)
    results = {}
    for otam in (False, True):
        distances = torch.tensor(1 - outputs)
        rows, rows_t = [], []
        for vi in inds:
            grids, grids_t = [], []
            for vj in inds:
                grid = distances[vi[0]: vi[-1] + 1, vj[0]: vj[-1] + 1].view(1, 1, len(vi), len(vj)).detach()
                grid *= (T * T) / (len(vi) * len(vj))  # in place on `distances`, as the original
                grids.append(_pad(grid, T, T, otam))
                if otam:
                    grids_t.append(_pad(torch.transpose(grid, -2, -1), T, T, otam))
            rows.append(torch.cat(grids, dim=1))
            if otam:
                rows_t.append(torch.cat(grids_t, dim=1))
        if otam:
            cost = _otam_cells(torch.cat(rows, dim=0)) + _otam_cells(torch.cat(rows_t, dim=0))
        else:
            cost = _dtw_cells(torch.cat(rows, dim=0))
        results["otam" if otam else "dtw"] = -cost.numpy()
    sims = {"caption_average": caption_average, **results}
    return _metrics(caption_average, sims["dtw"], sims["otam"]), sims


def original_loop_bg(outputs: np.ndarray, video_ids: list, text_lengths: list, video_lengths: list,
                     **_) -> tuple[dict, dict]:
    """The background-kept metric as the original ran it."""
    caption_ids = [vid for vid, n in zip(video_ids, text_lengths) for _ in range(n)]
    window_ids = [vid for vid, n in zip(video_ids, video_lengths) for _ in range(n)]
    videos = sorted(set(video_ids))
    text_inds, video_inds = _blocks(caption_ids, videos), _blocks(window_ids, videos)
    best = np.stack([np.max(outputs[:, v], axis=1) for v in video_inds], 1)
    caption_average = np.stack([np.mean(best[v, :], axis=0) for v in text_inds], 0)
    T0, T1 = max(len(v) for v in text_inds), max(len(v) for v in video_inds)
    distances = torch.tensor(1 - outputs)
    results = {}
    for otam in (False, True):
        rows, rows_t = [], []
        for ti in text_inds:
            grids, grids_t = [], []
            for vj in video_inds:
                grid = distances[ti[0]: ti[-1] + 1, vj[0]: vj[-1] + 1].view(1, 1, len(ti), len(vj)).detach()
                nearest, _ = torch.min(grid.view(len(ti), len(vj)), dim=0)
                keep = torch.unique(torch.sort(torch.argsort(nearest)[: int(1.3 * grid.shape[-2])])[0])
                grid = torch.index_select(grid, dim=-1, index=keep)
                grid *= (T0 * T1) / (grid.shape[-2] * grid.shape[-1])
                grids.append(_pad(grid, T0, T1, otam))
                if otam:
                    grids_t.append(_pad(torch.transpose(grid, -2, -1), T0, T1, otam))
            rows.append(torch.cat(grids, dim=1))
            if otam:
                rows_t.append(torch.cat(grids_t, dim=1))
        if otam:
            cost = _otam_cells(torch.cat(rows, dim=0)) + _otam_cells(torch.cat(rows_t, dim=0))
        else:
            cost = _dtw_cells(torch.cat(rows, dim=0))
        results["otam" if otam else "dtw"] = -cost.numpy()
    sims = {"caption_average": caption_average, **results}
    return _metrics(caption_average, sims["dtw"], sims["otam"]), sims


# ----------------------------------------------------------------------------------------------------------------
def best_time(fn: Callable[[], object], rounds: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


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
        loop = original_loop_clip if kind == "clip" else original_loop_bg
        row["original_loop_s"], (row["original_loop"], sims) = best_time(lambda: loop(**data), 1)
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
