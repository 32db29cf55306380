#!/usr/bin/env python
"""Share of TempCLR's alignment loss in one demo training step (forward + backward), on the device at hand.

    python benchmarks/bench_align_share.py [--config configs/demo/how2_dtw.yaml] [--steps 20]

Builds the demo AlignRetriTask (needs `make demo-data`), takes real training batches, and times
(a) the whole step: model forward, contrastive + alignment loss, backward; (b) the alignment loss alone
(forward + backward from the pooled vectors).  Prints the median of each and the ratio.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time


import torch

from tempclr.tasks.task import Task
from tempclr.utils.load_config import load_config


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo/how2_dtw.yaml")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = load_config(config_file=args.config, dryrun=True)
    task = Task.config_task(config)
    task.build_dataset()
    model = task.build_model().to(device).train()
    task.build_loss()
    random.seed(0)
    batches = [task.reshape_subsample(task.train_data.collater([task.train_data[i]])) for i in range(args.steps)]
    step_times, align_times = [], []
    for batch in batches:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        sync(device)
        start = time.perf_counter()
        out = model(**batch)
        coeff = task.alignment.alignment_loss_coeff
        loss = (1 - coeff) * task.loss_fn(**out) + coeff * task.alignment_loss(
            out["pooled_video"], out["pooled_text"], batch["text_start"], batch["text_end"],
            batch["video_start"], batch["video_end"])
        loss.backward()
        sync(device)
        step_times.append(time.perf_counter() - start)
        video = out["pooled_video"].detach().requires_grad_(True)
        text = out["pooled_text"].detach().requires_grad_(True)
        sync(device)
        start = time.perf_counter()
        task.alignment_loss(video, text, batch["text_start"], batch["text_end"], batch["video_start"],
                            batch["video_end"]).backward()
        sync(device)
        align_times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    step, align = statistics.median(step_times[2:]), statistics.median(align_times[2:])
    print(f"device {device}, {args.config}, {len(step_times) - 2} steps timed (2 warm-up)")
    print(f"training step (forward + both losses + backward): {step * 1e3:.1f} ms median")
    print(f"alignment loss alone (forward + backward):         {align * 1e3:.2f} ms median")
    print(f"share: {100 * align / step:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
