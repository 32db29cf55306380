#!/usr/bin/env python
"""What it costs to judge which checkpoint of a save_dir is newest, by what the checkpoints hold.

    python benchmarks/bench_checkpoint_progress.py [--params 170000000] [--tensors 600] [--repeat 5]

Writes one fairseq-like checkpoint to a temp folder (``--params`` fp32 model weights in ``--tensors`` tensors, two
Adam states per tensor: about 2 GB for the defaults, VideoCLIP's size) and times, per read, the median of
``--repeat``: (a) :func:`tempclr.utils.checkpoint.checkpoint_progress` (the pickled index only, no tensor data),
(b) ``torch.load(mmap=True, weights_only=True)`` (every tensor mapped, none read), (c) a full ``torch.load``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from tempclr.utils.checkpoint import checkpoint_progress


def median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=int, default=170_000_000)
    parser.add_argument("--tensors", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-full-load", action="store_true")
    args = parser.parse_args()
    size = args.params // args.tensors
    model = {f"mmmodel.layer{i}.weight": torch.randn(size) for i in range(args.tensors)}
    optimizer = {"state": {i: {"exp_avg": torch.zeros(size), "exp_avg_sq": torch.zeros(size), "step": torch.tensor(5.0)}
                           for i in range(args.tensors)},
                 "param_groups": [{"lr": 1e-4, "params": list(range(args.tensors))}]}
    checkpoint = {"model": model, "last_optimizer_state": optimizer, "optimizer_history": [{"num_updates": 100}],
                  "extra_state": {"train_iterator": {"epoch": 3, "iterations_in_epoch": 0}}}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "checkpoint3.pt")
        torch.save(checkpoint, path)
        del model, optimizer, checkpoint
        print(f"checkpoint: {os.path.getsize(path) / 1e9:.2f} GB, {3 * args.tensors} tensors")
        index = median_seconds(lambda: checkpoint_progress(path), args.repeat)
        print(f"checkpoint_progress (index only): {index * 1000:.1f} ms")
        mapped = median_seconds(lambda: torch.load(path, map_location="cpu", mmap=True, weights_only=True),
                                args.repeat)
        print(f"torch.load(mmap=True):            {mapped * 1000:.1f} ms")
        if not args.skip_full_load:
            full = median_seconds(lambda: torch.load(path, map_location="cpu", weights_only=True), 1)
            print(f"torch.load (whole file):          {full * 1000:.1f} ms")


if __name__ == "__main__":
    main()
