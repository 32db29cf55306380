"""``tempclr-extract``: the command line of :mod:`tempclr.processors.extraction` (argument parsing only; the work and
its documentation are there)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

import tempclr.processors.extraction as _library
from tempclr.processors.extraction import (  # noqa: F401 (re-exported)
    DEFAULT_CHECKPOINT, ERROR_LOG_NAME, ExtractError, ExtractSummary, extract_features, parse_split,
    plan_videos, resolve_device,
)


# exit status: completed (failed videos included), nothing could run, bad flags, --strict with failed videos
EXIT_OK, EXIT_CANNOT_RUN, EXIT_BAD_FLAGS, EXIT_STRICT_FAILURES = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tempclr-extract", description=_library.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vdir", required=True, help="folder of videos (and its direct sub-folders)")
    parser.add_argument("--fdir", required=True, help="output folder: <fdir>/<video file stem>.npy")
    parser.add_argument("--type", default="s3d", help="feature type; only s3d (MMPT's 2d/3d/vae are not ported)")
    parser.add_argument("--batch_size", type=int, default=32, help="clips (seconds) per S3D forward (32)")
    parser.add_argument("--half_precision", type=int, choices=(0, 1), default=1, help="1: save float16 (default)")
    parser.add_argument("--l2_normalize", type=int, choices=(0, 1), default=1, help="1: unit-norm rows (default)")
    parser.add_argument("--num_decoding_thread", type=int, default=4, help="videos decoded in parallel (4)")
    parser.add_argument("--s3d_checkpoint", default=DEFAULT_CHECKPOINT,
                        help=f"HowTo100M S3D weights (default {DEFAULT_CHECKPOINT})")
    parser.add_argument("--split", default=None, help="i/n: extract the i-th (from 0) of n contiguous parts")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:k")
    parser.add_argument("--error_log", default=None, help=f"failed videos (default <fdir>/{ERROR_LOG_NAME})")
    parser.add_argument("--strict", action="store_true", help="exit with status 3 when any video failed")
    parser.add_argument("--size", type=int, default=224,
                        help="crop side; keep 224 for the released S3D (other sizes: tests and benchmarks)")
    parser.add_argument("--colour", choices=("ffmpeg", "exact"), default="ffmpeg",
                        help="RGB conversion: ffmpeg (default; the original extractor's: chroma siting ignored, as "
                             "ffmpeg's scale filter does) or exact (the stream's chroma siting honoured)")
    parser.add_argument("--no_progress", action="store_true", help="no tqdm bar")
    parser.add_argument("--dryrun", action="store_true",
                        help="print the plan (videos to do / skipped; with --engine ray the actors and the cluster's "
                             "resources) and exit")
    ray = parser.add_argument_group("Ray engine (pip install 'tempclr[ray]'; see tempclr.processors.ray_extraction)")
    ray.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local (default: this process, decoding threads) or ray (a Ray Data pipeline: decoding in "
                          "CPU tasks, S3D in an actor pool, on one machine or a cluster)")
    ray.add_argument("--address", default=None,
                     help="Ray cluster: auto (the one started on this machine with `ray start`), HOST:PORT, or "
                          "left out: RAY_ADDRESS when set, else a new single-machine Ray")
    ray.add_argument("--num-model-actors", "--num_model_actors", dest="num_model_actors", type=int, default=1,
                     help="S3D actors (one model load each; 1)")
    ray.add_argument("--gpus-per-actor", "--gpus_per_actor", dest="gpus_per_actor", type=float, default=0,
                     help="GPUs per S3D actor (0: S3D on CPUs; 1 on GPU nodes)")
    ray.add_argument("--cpus-per-actor", "--cpus_per_actor", dest="cpus_per_actor", type=float, default=1,
                     help="CPUs reserved per S3D actor (1)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.type != "s3d":
        parser.error(f"--type {args.type}: only s3d features are supported")
    if args.batch_size < 1 or args.num_decoding_thread < 1:
        parser.error("--batch_size and --num_decoding_thread must be >= 1")
    if args.size < 2 or args.size % 2:
        parser.error(f"--size {args.size}: must be an even number (224 for the released S3D)")
    try:
        parse_split(args.split)
    except ValueError as error:
        parser.error(str(error))
    if args.engine == "local" and (args.address is not None or args.num_model_actors != 1
                                   or args.gpus_per_actor != 0 or args.cpus_per_actor != 1):
        parser.error("--address, --num-model-actors, --gpus-per-actor and --cpus-per-actor need --engine ray")
    if args.engine == "ray" and args.device != "auto":
        parser.error("--device is for --engine local; with --engine ray S3D runs on GPUs with --gpus-per-actor")
    if args.engine == "ray" and args.num_decoding_thread != 4:
        parser.error("--num_decoding_thread is for --engine local; with --engine ray decoding runs in Ray tasks")
    error_log = args.error_log or os.path.join(args.fdir, ERROR_LOG_NAME)
    if args.engine == "ray":
        try:
            from tempclr.processors.ray_extraction import ray_extract_features

            videos = plan_videos(args.vdir, args.fdir, args.split)
            if not args.dryrun:
                os.makedirs(args.fdir, exist_ok=True)
            summary = ray_extract_features(
                videos, args.s3d_checkpoint, batch_size=args.batch_size, l2_normalize=bool(args.l2_normalize),
                half_precision=bool(args.half_precision), size=args.size, error_log=error_log,
                progress=False if args.no_progress else None, colour=args.colour, address=args.address,
                num_model_actors=args.num_model_actors, gpus_per_actor=args.gpus_per_actor,
                cpus_per_actor=args.cpus_per_actor, dryrun=args.dryrun)
        except (ExtractError, FileNotFoundError, ValueError) as error:
            print(f"tempclr-extract: error: {error}", file=sys.stderr)
            return EXIT_CANNOT_RUN
        if args.dryrun:
            return EXIT_OK
        return _report(summary, error_log, args.strict)
    try:
        import torch

        from tempclr.processors.models.s3dg import load_s3d

        videos = plan_videos(args.vdir, args.fdir, args.split)
        if args.dryrun:
            todo = [video for video, feature in videos if not os.path.isfile(feature)]
            print(f"videos: {len(todo)} to extract, {len(videos) - len(todo)} skipped (features exist)")
            print(f"decoding: {args.num_decoding_thread} threads; S3D in this process on --device {args.device}")
            return EXIT_OK
        device = resolve_device(args.device)
        model = load_s3d(args.s3d_checkpoint, device=device)
    except (ExtractError, FileNotFoundError, ValueError) as error:
        print(f"tempclr-extract: error: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    os.makedirs(args.fdir, exist_ok=True)
    print(f"{len(videos)} videos -> {args.fdir} (S3D on {device}, batch {args.batch_size}, "
          f"{args.num_decoding_thread} decoding threads)", file=sys.stderr)
    summary = extract_features(videos, model, batch_size=args.batch_size, l2_normalize=bool(args.l2_normalize),
                               half_precision=bool(args.half_precision), num_decoding_thread=args.num_decoding_thread,
                               size=args.size, error_log=error_log, progress=False if args.no_progress else None,
                               colour=args.colour)
    return _report(summary, error_log, args.strict)


def _report(summary: ExtractSummary, error_log: str, strict: bool) -> int:
    print(summary.line())
    if summary.failed:
        print(f"{len(summary.failed)} failed videos are listed in {error_log}; fix or remove them and run the "
              "same command again (finished videos are skipped)")
        if strict:
            return EXIT_STRICT_FAILURES
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
