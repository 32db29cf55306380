"""Random clip reads: memory-mapped ShardedTensor vs one ``np.load`` per video file.

Writes ``n_videos`` videos of per-second features ``[T, 512]`` float16 (T uniform in 90..150) both as
``<dir>/<id>.npy`` files and as ShardedTensor shards, then reads a random 3..32 s clip from each of ``n_reads``
randomly drawn videos, copying it out of the file or mapping (the float32 conversion the aligner does next costs
the same for every method and is left out).  Every method reads the same clips in the same order, and the first
pass checks that they return identical arrays.  Methods:

- ``np.load per file``: what a per-video ``VideoProcessor`` does (open, parse header, read the whole video);
- ``mmap reopened per item``: the original ``ShardedTensor`` access pattern (both ``.npy`` files re-opened as
  memmaps for every item);
- ``ShardedTensor (mmap once)``: this repo's ``ShardedTensor.load`` once per shard, then slicing.

Files are freshly written, so all methods read from the OS page cache (warm), as in a training epoch after the
first.  Usage: ``python benchmarks/bench_shardedtensor.py [--n-videos 384] [--n-reads 2000] [--shard-size 128]``
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Callable

import numpy as np

from tempclr.utils.shardedtensor import ShardedTensor, shard_paths

FEATURE_DIM = 512


def make_data(folder: str, n_videos: int, shard_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Write per-video files ``<folder>/videos/<i>.npy`` and shards ``<folder>/shards/train_<k>``."""
    os.makedirs(os.path.join(folder, "videos"))
    os.makedirs(os.path.join(folder, "shards"))
    videos = []
    for i in range(n_videos):
        feats = rng.standard_normal((int(rng.integers(90, 151)), FEATURE_DIM)).astype(np.float16)
        np.save(os.path.join(folder, "videos", f"{i:05d}.npy"), feats)
        videos.append(feats)
    for k in range(0, n_videos, shard_size):
        shard_prefix = os.path.join(folder, "shards", f"train_{k // shard_size}")
        ShardedTensor.from_list(videos[k:k + shard_size]).save(shard_prefix)
    return videos


def make_plan(videos: list[np.ndarray], n_reads: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """``(video_index, start, end)`` for ``n_reads`` random videos, each a random 3..32 s clip."""
    plan = []
    for v in rng.integers(0, len(videos), size=n_reads):
        length = int(rng.integers(3, 33))
        start = int(rng.integers(0, len(videos[v]) - length + 1))
        plan.append((int(v), start, start + length))
    return plan


def reader_per_file(folder: str, shard_size: int) -> Callable[[int, int, int], np.ndarray]:
    def read(v: int, s: int, e: int) -> np.ndarray:
        return np.load(os.path.join(folder, "videos", f"{v:05d}.npy"))[s:e].copy()
    return read


def reader_reopen(folder: str, shard_size: int) -> Callable[[int, int, int], np.ndarray]:
    def read(v: int, s: int, e: int) -> np.ndarray:
        starts_path, data_path = shard_paths(os.path.join(folder, "shards", f"train_{v // shard_size}"))
        starts = np.load(starts_path, mmap_mode="r")
        data = np.load(data_path, mmap_mode="r")
        i = v % shard_size
        return data[starts[i]:starts[i + 1]][s:e].copy()
    return read


def reader_sharded(folder: str, shard_size: int) -> Callable[[int, int, int], np.ndarray]:
    shards: dict[int, ShardedTensor] = {}

    def read(v: int, s: int, e: int) -> np.ndarray:
        k = v // shard_size
        if k not in shards:
            shards[k] = ShardedTensor.load(os.path.join(folder, "shards", f"train_{k}"))
        return shards[k][v % shard_size][s:e].copy()
    return read


METHODS = {
    "np.load per file": reader_per_file,
    "mmap reopened per item (original)": reader_reopen,
    "ShardedTensor (mmap once)": reader_sharded,
}


def time_method(make_reader: Callable, folder: str, shard_size: int, plan: list, repeats: int,
                expected: list[np.ndarray]) -> float:
    """Median seconds for one pass over ``plan`` (a fresh reader per pass, so shard opening is counted)."""
    times = []
    for r in range(repeats):
        read = make_reader(folder, shard_size)
        t0 = time.perf_counter()
        clips = [read(v, s, e) for v, s, e in plan]
        times.append(time.perf_counter() - t0)
        if r == 0:
            for j, (got, want) in enumerate(zip(clips, expected)):
                if not np.array_equal(got, want):
                    raise AssertionError(f"read {j} differs from the reference clip")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-videos", type=int, default=384)
    parser.add_argument("--n-reads", type=int, default=2000)
    parser.add_argument("--shard-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        videos = make_data(folder, args.n_videos, args.shard_size, rng)
        plan = make_plan(videos, args.n_reads, rng)
        expected = [videos[v][s:e].copy() for v, s, e in plan]
        results = {name: time_method(fn, folder, args.shard_size, plan, args.repeats, expected)
                   for name, fn in METHODS.items()}
    base = results["np.load per file"]
    print(f"{args.n_videos} videos [T=90..150, {FEATURE_DIM}] float16, shard size {args.shard_size}, "
          f"{args.n_reads} random 3..32 s clip reads, median of {args.repeats} passes")
    print("| method | ms / pass | us / read | speed-up vs np.load |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in results.items():
        print(f"| {name} | {seconds * 1e3:.1f} | {seconds / args.n_reads * 1e6:.1f} | {base / seconds:.1f}x |")


if __name__ == "__main__":
    main()
