"""Feature-extraction throughput: PyAV decoding and S3D, in video-seconds per second, beside the compute bound.

Measures, on a synthetic H.264 video written with PyAV (``--width x --height``, 25 fps, ``--seconds`` long, moving
noise so the encoder cannot cheat):

- **decode**: :class:`tempclr.processors.videoreader.VideoClipReader` (decode, resample to 30 fps, scale the short
  side to 224 bicubic, centre crop, 30-frame clips), one thread, in video-seconds per second;
- **S3D**: the forward of :class:`tempclr.processors.models.S3D` (random weights, eval, ``torch.inference_mode``)
  on batches of ``--batch`` 30 x 224 x 224 clips (one clip = one second of video), in video-seconds per second;
- **S3D FLOPs per second of video**: ``torch.utils.flop_counter.FlopCounterMode`` on one clip (convolutions and
  matmuls, a multiply-add counted as 2 FLOPs);
- **matmul FLOP/s**: the best of several fp32 ``n x n`` matmuls (``--matmul-n``, 2 n^3 FLOPs each), the machine's
  practical compute bound; the S3D row's achieved FLOP/s is divided by it.

The decoder is timed with the default colour conversion (ffmpeg's scale filter) and with ``colour="exact"``.
``--baseline REV`` also times the decoder of git revision ``REV`` (its ``tempclr/processors/videoreader.py``,
loaded into a temporary module) on the same video, alternating with the current one, so the two decode rates come
from one run on one machine; ``--decode-only`` skips S3D and the matmul.

``--engines`` compares the whole extractor instead (``tempclr-extract``'s two engines on the same ``--videos``
synthetic videos of ``--seconds`` each, at crop side ``--size``): the local engine (decoding threads, S3D in the
process) and ``--engine ray`` on a Ray cluster started here (``ray.cluster_utils.Cluster``: a head without CPUs and
1, then 2 worker nodes of ``--worker-cpus`` CPUs, one S3D actor per worker); videos/s and video-seconds/s of each,
and where the time went: decoding vs S3D (local, S3D on ``--device``: a decode-only pass and S3D on the decoded
clips, timed apart; Ray: the summed remote wall time of the decode tasks and of the S3D actor calls, from Ray
Data's statistics).  The outputs of every engine are checked to be the same bytes.

Prints a markdown table.  Usage::

    python benchmarks/bench_extract.py [--device cpu|cuda] [--batch 4] [--reps 3] [--seconds 20] \
        [--baseline f438abd] [--decode-only]
    python benchmarks/bench_extract.py --engines [--videos 4] [--seconds 8] [--size 112] [--batch 8] \
        [--workers 1,2] [--worker-cpus 2] [--gpus-per-actor 0]
"""
from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import types
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from synthetic_video import write_video  # noqa: E402
from tempclr.processors.models.s3dg import S3D  # noqa: E402
from tempclr.processors.videoreader import VideoClipReader  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reader_at(revision: str):
    """``VideoClipReader`` of git revision ``revision``, loaded from ``git show`` into a temporary module."""
    source = subprocess.run(["git", "-C", ROOT, "show", f"{revision}:tempclr/processors/videoreader.py"],
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType(f"videoreader_{revision}")
    exec(compile(source, f"{revision}:tempclr/processors/videoreader.py", "exec"), module.__dict__)
    return module.VideoClipReader


def decode_rates(path: str, reps: int, readers: dict) -> dict:
    """``{name: (video-seconds decoded per second, video seconds)}``, best of ``reps`` per reader; the readers
    take turns in each repetition, so a change in the machine's load reaches all of them."""
    best = {name: float("inf") for name in readers}
    seconds = {}
    for _ in range(reps):
        for name, reader_class in readers.items():
            reader = reader_class(path, clips_per_chunk=8, threads=1)
            start = time.perf_counter()
            for _ in reader:
                pass
            best[name] = min(best[name], time.perf_counter() - start)
            seconds[name] = reader.seconds
    return {name: (seconds[name] / best[name], seconds[name]) for name in readers}


def s3d_flops_per_clip(model: S3D, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    clip = torch.rand(1, 3, 30, 224, 224, device=device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(clip)
    return float(counter.get_total_flops())


def s3d_rate(model: S3D, device: torch.device, batch: int, reps: int, dtype: torch.dtype) -> float:
    """Clips (= video-seconds) per second, best of ``reps`` after one warm-up batch."""
    clips = torch.rand(batch, 3, 30, 224, 224, device=device)
    best = float("inf")
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        model(clips)
        sync(device)
        for _ in range(reps):
            start = time.perf_counter()
            model(clips)
            sync(device)
            best = min(best, time.perf_counter() - start)
    return batch / best


def matmul_flops(device: torch.device, n: int, reps: int) -> float:
    a = torch.rand(n, n, device=device)
    b = torch.rand(n, n, device=device)
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def _ray_operator_seconds(stats: str) -> dict:
    """``{operator name: summed remote wall seconds}`` from Ray Data's ``Dataset.stats()`` text."""
    import re

    out, current = {}, None
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
    for line in stats.splitlines():
        head = re.match(r"Operator \d+ (.+?): ", line)
        if head:
            current = head.group(1)
        total = re.search(r"Remote wall time: .*?([\d.]+)(us|ms|s) total", line)
        if total and current:
            out[current] = float(total.group(1)) * units[total.group(2)]
    return out


def bench_engines(args) -> int:
    """The ``--engines`` comparison (see the module's description)."""
    import shutil

    from tempclr.processors.extraction import extract_features, plan_videos
    from tempclr.processors.models.s3dg import load_s3d, s3d_embed

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (args.height + 64, args.width + 64, 3), dtype=np.uint8)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        vdir = os.path.join(folder, "videos")
        os.makedirs(vdir)
        for v in range(args.videos):
            write_video(os.path.join(vdir, f"v{v}.mp4"), 25, args.width, args.height, args.seconds * 25,
                        frame=lambda i, h, w, v=v: noise[(i + v) % 64:(i + v) % 64 + h, (2 * i) % 64:(2 * i) % 64 + w],
                        pix_fmt="yuv420p", lossless=False)
        checkpoint = os.path.join(folder, "s3d.pth")
        torch.save(S3D(None).state_dict(), checkpoint)
        model = load_s3d(checkpoint, device=args.device)
        # local: decode alone, S3D alone on the decoded clips, then the engine end to end
        start = time.perf_counter()
        decoded = [np.concatenate(list(VideoClipReader(path, size=args.size, clips_per_chunk=args.batch)))
                   for path, _ in plan_videos(vdir, os.path.join(folder, "unused"))]
        decode_s = time.perf_counter() - start
        start = time.perf_counter()
        for clips in decoded:
            for k in range(0, len(clips), args.batch):
                s3d_embed(model, clips[k:k + args.batch])
        model_s = time.perf_counter() - start
        del decoded
        fdir = os.path.join(folder, "local")
        summary = extract_features(plan_videos(vdir, fdir), model, batch_size=args.batch, size=args.size,
                                   num_decoding_thread=args.decode_threads, progress=False)
        rows.append((f"local ({args.decode_threads} decoding threads, torch {torch.get_num_threads()} threads)",
                     summary, f"{decode_s:.1f} s decode / {model_s:.1f} s S3D (timed apart)"))
        reference = {name: open(os.path.join(fdir, name), "rb").read() for name in sorted(os.listdir(fdir))}
        import ray
        from ray.cluster_utils import Cluster

        from tempclr.processors.ray_extraction import ray_extract_features

        for workers in args.workers:
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
            for _ in range(workers):
                cluster.add_node(num_cpus=args.worker_cpus, num_gpus=args.gpus_per_actor and 1)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
            try:
                fdir = os.path.join(folder, f"ray{workers}")
                stats: list = []
                summary = ray_extract_features(plan_videos(vdir, fdir), checkpoint, batch_size=args.batch,
                                               size=args.size, progress=False, num_model_actors=workers,
                                               gpus_per_actor=args.gpus_per_actor, stats=stats)
                seconds = _ray_operator_seconds(stats[0])
                decode = sum(v for k, v in seconds.items() if "decode_videos" in k)
                s3d = sum(v for k, v in seconds.items() if "S3DActor" in k)
                same = {name: open(os.path.join(fdir, name), "rb").read()
                        for name in sorted(os.listdir(fdir))} == reference
                rows.append((f"Ray, {workers} worker node(s) x {args.worker_cpus} CPUs, {workers} S3D actor(s)",
                             summary, f"{decode:.1f} s decode tasks / {s3d:.1f} s S3D actor calls (summed)"
                             + ("" if same else "; OUTPUT DIFFERS FROM LOCAL")))
            finally:
                ray.shutdown()
                cluster.shutdown()
                shutil.rmtree(os.path.join(folder, f"ray{workers}"), ignore_errors=True)
    print(f"{args.videos} videos x {args.seconds} s ({args.width}x{args.height} 25 fps H.264), crop {args.size}, "
          f"S3D batch {args.batch} (random weights, CPU unless --gpus-per-actor); wall time: local with S3D loaded, "
          "Ray with actor start-up and model load (cluster start-up excluded)")
    print("| engine | videos / s | video-s / s | wall s | decode vs S3D time |")
    print("|---|---|---|---|---|")
    for name, summary, split in rows:
        wall = summary.wall_seconds
        print(f"| {name} | {len(summary.done) / wall:.3f} | {summary.video_seconds / wall:.2f} | {wall:.1f} | "
              f"{split} |")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4, help="clips per S3D forward")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=20, help="length of the synthetic video")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--matmul-n", type=int, default=2048)
    parser.add_argument("--bf16", action="store_true", help="also time S3D under bf16 autocast")
    parser.add_argument("--baseline", default=None, help="git revision whose decoder is timed beside this one")
    parser.add_argument("--decode-only", action="store_true", help="time decoding only (no S3D, no matmul)")
    parser.add_argument("--engines", action="store_true", help="local vs Ray extraction, end to end")
    parser.add_argument("--videos", type=int, default=4, help="--engines: number of videos")
    parser.add_argument("--size", type=int, default=112, help="--engines: crop side (224 for the real S3D)")
    parser.add_argument("--workers", default="1,2", help="--engines: Ray worker node counts to time")
    parser.add_argument("--worker-cpus", type=int, default=2, help="--engines: CPUs of each Ray worker node")
    parser.add_argument("--gpus-per-actor", type=float, default=0, help="--engines: 1 on a GPU machine")
    parser.add_argument("--decode-threads", type=int, default=2, help="--engines: local decoding threads")
    args = parser.parse_args(argv)
    if args.engines:
        args.workers = [int(w) for w in args.workers.split(",")]
        return bench_engines(args)
    device = torch.device(args.device)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (args.height + 64, args.width + 64, 3), dtype=np.uint8)

    def frame(i, h, w):
        return noise[i % 64:i % 64 + h, (2 * i) % 64:(2 * i) % 64 + w]

    with tempfile.TemporaryDirectory() as folder:
        path = write_video(os.path.join(folder, "bench.mp4"), 25, args.width, args.height, args.seconds * 25,
                           frame=frame, pix_fmt="yuv420p", lossless=False)
        readers = {"this tree": VideoClipReader,
                   "this tree, --colour exact": functools.partial(VideoClipReader, colour="exact")}
        if args.baseline:
            readers[args.baseline] = reader_at(args.baseline)
        decoded = decode_rates(path, args.reps, readers)
    label = "decode (PyAV, 1 thread, %dx%d 25 fps -> 30 fps 224 crop" % (args.width, args.height)
    rows = [(f"{label}, {name})", rate, None) for name, (rate, _) in decoded.items()]
    seconds = decoded["this tree"][1]
    if args.decode_only:
        print(f"decoded video {seconds:.0f} s (frames/s = video-s/s x 30)")
        print("| stage | video-s / s | frames / s |")
        print("|---|---|---|")
        for name, value, _ in rows:
            print(f"| {name} | {value:.2f} | {30 * value:.0f} |")
        return 0
    model = S3D(None).to(device).eval()
    flops = s3d_flops_per_clip(model, device)
    peak = matmul_flops(device, args.matmul_n, max(args.reps, 5))
    rate = s3d_rate(model, device, args.batch, args.reps, torch.float32)
    rows.append((f"S3D fp32, batch {args.batch}, {device}", rate, rate * flops))
    if args.bf16:
        rate = s3d_rate(model, device, args.batch, args.reps, torch.bfloat16)
        rows.append((f"S3D bf16 autocast, batch {args.batch}, {device}", rate, rate * flops))
    print(f"torch threads {torch.get_num_threads()}, S3D {flops / 1e9:.1f} GFLOP per second of video, "
          f"fp32 matmul {args.matmul_n}^3: {peak / 1e9:.1f} GFLOP/s; decoded video {seconds:.0f} s")
    print("| stage | video-s / s | achieved GFLOP/s | of matmul FLOP/s |")
    print("|---|---|---|---|")
    for name, value, achieved in rows:
        extra = ("—", "—") if achieved is None else (f"{achieved / 1e9:.1f}", f"{achieved / peak:.0%}")
        print(f"| {name} | {value:.2f} | {extra[0]} | {extra[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
