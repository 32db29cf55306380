"""Training throughput on 1, 2, ... ranks: the demo's VideoCLIP pretraining through the real launcher.

    .venv/bin/python benchmarks/bench_scaling.py [--config configs/demo/how2.yaml] [--ranks 1 2] [--groups 48]

For each rank count N the same work is done: ``--groups`` training groups (one group = ``num_video_per_batch``
videos x ``clip_per_video`` clips = one batch per rank per update), so ``groups / N`` updates of a global batch of
N groups.  Every run starts with the retrieval pass of epoch 1 (embed every training video, gather the vectors,
index + search, as VideoRetriTask does before each epoch).  Reported per N, parsed from the run's own log:

- clips per second in the training steps (``train_wall`` of fairseq's epoch line) and the scaling efficiency
  ``throughput(N) / (N x throughput(1))``;
- the retrieval pass: embedding, gathering the vectors across ranks, faiss index + search (seconds, rank 0);
- the gradient all-reduce alone: the model's parameter count in float32, summed over N gloo (or NCCL) processes
  (median of 20 calls after 3 warm-up calls), the communication part of each update;
- the wall time of the whole command.

On CUDA (``--device cuda``) the ranks are GPUs; on CPU (the default where there is none) they share the cores.
Every run gets the same threads per rank (``--threads``, default ``cores // max(--ranks)``, as
``OMP_NUM_THREADS``), so the efficiency compares like with like: N ranks of T threads against one rank of T
threads.  (One process on all the cores of a loaded machine can be slower than that: torch's threads then wait for
each other.)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tempclr.utils.load_config import cfg_get, recursive_config  # noqa: E402
from tempclr_cli.localjob import _free_port  # noqa: E402


def run_training(config: str, ranks: int, groups: int, workdir: str, threads: int) -> dict:
    base = recursive_config(config)
    clips = int(cfg_get(base, "dataset.num_video_per_batch")) * int(cfg_get(base, "dataset.clip_per_video"))
    updates = groups // ranks
    save_dir = os.path.join(workdir, f"ranks{ranks}")
    path = os.path.join(workdir, f"ranks{ranks}.yaml")
    with open(path, "w") as f:
        f.write(f"includes: {os.path.abspath(config)}\nfairseq:\n  optimization:\n    max_update: {updates}\n"
                f"  checkpoint:\n    save_dir: {save_dir}\n    no_save: true\n")
    jobtype = "local_single" if ranks == 1 else "local_small"
    cmd = [sys.executable, "locallaunch.py", path, "--jobtype", jobtype] + (["--nproc", str(ranks)] if ranks > 1 else [])
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    log = out.stdout + out.stderr
    with open(os.path.join(workdir, f"ranks{ranks}.log"), "w") as f:
        f.write(log)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{log[-3000:]}")
    epoch = re.search(r"\| train \| epoch 001 \|.*\| num_updates (\d+) \|.*\| train_wall (\d+(?:\.\d+)?)", log)
    steps = re.findall(r"\| train_inner \|.*?num_updates=(\d+).*?train_wall=(\d+(?:\.\d+)?)", log)
    retri = re.search(r"retrieval epoch 1 on \d+ rank\(s\): \d+ groups; embed ([\d.]+)s, gather ([\d.]+)s, "
                      r"index\+search ([\d.]+)s, total ([\d.]+)s", log)
    if epoch is None:
        raise RuntimeError(f"no epoch line in the log of {' '.join(cmd)}:\n{log[-3000:]}")
    done = int(epoch.group(1))
    train_wall = float(epoch.group(2))
    result = {"ranks": ranks, "updates": done, "clips": done * ranks * clips, "train_wall_s": train_wall,
              "clips_per_s": done * ranks * clips / train_wall if train_wall > 0 else float("nan"),
              "command_wall_s": wall, "inner_lines": len(steps)}
    if retri:
        result.update(embed_s=float(retri.group(1)), gather_s=float(retri.group(2)),
                      search_s=float(retri.group(3)), retrieval_s=float(retri.group(4)))
    return result


def _allreduce_worker(rank: int, world: int, port: int, numel: int, backend: str, queue) -> None:
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    grad = torch.ones(numel, dtype=torch.float32, device=device)
    times = []
    for i in range(23):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        dist.all_reduce(grad)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    if rank == 0:
        queue.put(statistics.median(times))
    dist.destroy_process_group()


def allreduce_seconds(world: int, numel: int, backend: str) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.start_processes(_allreduce_worker, args=(world, _free_port(), numel, backend, queue), nprocs=world,
                       start_method="spawn")
    return queue.get()


def model_numel(config: str) -> int:
    """Parameters of the config's model, counted from a freshly built one (what the all-reduce sums)."""
    from tempclr.tasks.task import Task
    from tempclr.utils.load_config import load_config

    task = Task.config_task(load_config(config_file=config, dryrun=True))
    return sum(p.numel() for p in task.build_model().parameters() if p.requires_grad)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo/how2.yaml")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--groups", type=int, default=48, help="training groups per run (48 = one demo epoch)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS of every rank (default: cores // max(--ranks))")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--logs", default=None, help="keep the runs' logs in this folder")
    args = parser.parse_args(argv)
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(args.ranks))
    os.chdir(ROOT)
    numel = model_numel(args.config)
    backend = "nccl" if args.device == "cuda" else "gloo"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_scaling_") as workdir:
        for ranks in args.ranks:
            row = run_training(args.config, ranks, args.groups, workdir, threads)
            if args.logs:
                os.makedirs(args.logs, exist_ok=True)
                os.replace(os.path.join(workdir, f"ranks{ranks}.log"), os.path.join(args.logs, f"ranks{ranks}.log"))
            row["allreduce_ms"] = 1e3 * allreduce_seconds(ranks, numel, backend) if ranks > 1 else 0.0
            row["step_ms"] = 1e3 * row["train_wall_s"] / max(1, row["updates"])
            rows.append(row)
    single = next((r for r in rows if r["ranks"] == 1), None)
    load = os.getloadavg()
    print(f"# {args.config}, {args.groups} groups per run, {args.device}, {os.cpu_count()} cores, "
          f"{threads} thread(s) per rank, "
          f"{numel:,} trained parameters, load average before/after {load[2]:.2f}/{load[0]:.2f}")
    print("| ranks | updates | clips / s (train steps) | efficiency | ms / update | all-reduce ms / update | "
          "retrieval pass s (embed / gather / index+search) | command wall s |")
    print("|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        eff = r["clips_per_s"] / (r["ranks"] * single["clips_per_s"]) if single else float("nan")
        retri = (f"{r['retrieval_s']:.2f} ({r['embed_s']:.2f} / {r['gather_s']:.2f} / {r['search_s']:.2f})"
                 if "retrieval_s" in r else "-")
        print(f"| {r['ranks']} | {r['updates']} | {r['clips_per_s']:.1f} | {eff:.2f} | {r['step_ms']:.0f} | "
              f"{r['allreduce_ms']:.1f} | {retri} | {r['command_wall_s']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
