"""``tempclr-index``: the command line of :mod:`tempclr.evaluators.video_index` (argument parsing only; the work and
its documentation are there)."""
from __future__ import annotations

import argparse
import sys
from typing import Optional

import tempclr.evaluators.video_index as _library
from tempclr.evaluators.video_index import IndexParams, index_features  # noqa: F401 (re-exported)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tempclr-index", description=_library.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("feature_dir", help="folder of <id>.npy S3D features (tempclr-extract's --fdir)")
    parser.add_argument("--config", required=True, help="run config (model, dataset.bert_name, eval.save_path)")
    parser.add_argument("--checkpoint", default="checkpoint_best.pt", help="joined to eval.save_path")
    parser.add_argument("--s3d_checkpoint", default=None, help="default pretrained_models/s3d_howto100m.pth")
    parser.add_argument("--out", required=True, help="index folder (shards, index.faiss, index.json)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:k")
    parser.add_argument("--shard_videos", type=int, default=1000, help="videos per vector shard (1000)")
    parser.add_argument("--exact_below", type=int, default=IndexParams.exact_below,
                        help=f"exact IndexFlatIP under this many windows, IVF-PQ above ({IndexParams.exact_below})")
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default about 4 sqrt(windows))")
    parser.add_argument("--pq_m", type=int, default=None, help="PQ sub-quantizers (default H / 4)")
    parser.add_argument("--pq_nbits", type=int, default=8, help="bits per PQ code (8)")
    parser.add_argument("--nprobe", type=int, default=None, help="lists searched (default nlist / 8)")
    parser.add_argument("--refine", choices=("fp16", "none"), default="fp16",
                        help="re-rank IVF-PQ candidates with float16 vectors (default) or not")
    parser.add_argument("--recall_queries", type=int, default=1000, help="held-out windows for recall@10 (1000)")
    ray = parser.add_argument_group("Ray engine (pip install 'tempclr[ray]'; see tempclr.evaluators.ray_index)")
    ray.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local (default: this process) or ray (an actor pool of VideoCLIP models)")
    ray.add_argument("--address", default=None, help="Ray cluster: auto, HOST:PORT, or a new single-machine Ray")
    ray.add_argument("--num-model-actors", "--num_model_actors", dest="num_model_actors", type=int, default=1)
    ray.add_argument("--gpus-per-actor", "--gpus_per_actor", dest="gpus_per_actor", type=float, default=0)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("shard_videos", "exact_below", "pq_nbits", "recall_queries"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    for name in ("nlist", "pq_m", "nprobe"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    params = IndexParams(exact_below=args.exact_below, nlist=args.nlist, m=args.pq_m, nbits=args.pq_nbits,
                         nprobe=args.nprobe, n_queries=args.recall_queries, refine=args.refine)
    if args.engine == "local" and (args.address is not None or args.num_model_actors != 1
                                   or args.gpus_per_actor != 0):
        parser.error("--address, --num-model-actors and --gpus-per-actor need --engine ray")
    if args.num_model_actors < 1 or args.gpus_per_actor < 0:
        parser.error("--num-model-actors must be >= 1 and --gpus-per-actor >= 0")
    extra = {"config": args.config, "checkpoint": args.checkpoint}
    if args.engine == "ray":
        from tempclr.processors.extraction import ExtractError

        try:
            from tempclr.evaluators.ray_index import ray_index_features

            manifest = ray_index_features(args.feature_dir, args.config, args.out, checkpoint=args.checkpoint,
                                          s3d_checkpoint=args.s3d_checkpoint, params=params,
                                          shard_videos=args.shard_videos, address=args.address,
                                          num_model_actors=args.num_model_actors,
                                          gpus_per_actor=args.gpus_per_actor, extra=extra)
        except (FileNotFoundError, ValueError, ExtractError, FloatingPointError, RuntimeError) as error:
            print(f"tempclr-index: error: {error}", file=sys.stderr)
            return 1
        return _report(manifest, args.out)
    try:
        from tempclr.models import MMPTModel
        from tempclr.models.mmptmodel import DEFAULT_S3D_CHECKPOINT
        from tempclr.processors.extraction import ExtractError, resolve_device

        model, _, _ = MMPTModel.from_pretrained(args.config, checkpoint=args.checkpoint,
                                                s3d_checkpoint=args.s3d_checkpoint or DEFAULT_S3D_CHECKPOINT)
        model.to(resolve_device(args.device))
        manifest = index_features(args.feature_dir, model, args.out, params=params, shard_videos=args.shard_videos,
                                  extra=extra)
    except (FileNotFoundError, ValueError, ExtractError, FloatingPointError) as error:
        print(f"tempclr-index: error: {error}", file=sys.stderr)
        return 1
    return _report(manifest, args.out)


def _report(manifest: dict, out: str) -> int:
    print(f"{manifest['videos']} videos, {manifest['count']} windows -> {out} ({manifest['kind']}, "
          f"recall@10 {manifest['recall_at_10']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
