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

Prints a markdown table.  Usage::

    python benchmarks/bench_extract.py [--device cpu|cuda] [--batch 4] [--reps 3] [--seconds 20] \
        [--baseline f438abd] [--decode-only]
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
    args = parser.parse_args(argv)
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
