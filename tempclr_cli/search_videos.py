"""``tempclr-search-videos``: the command line of :mod:`tempclr.evaluators.video_search` (argument parsing only; the
work and its documentation are there)."""
from __future__ import annotations

import argparse
import sys
from typing import Optional

import tempclr.evaluators.video_search as _library
from tempclr.processors.extraction import ExtractError
from tempclr.evaluators.video_search import VideoHit, VideoIndex, embed_queries, search  # noqa: F401 (re-exported)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="tempclr-search-videos", description=_library.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("queries", nargs="+", help="text queries")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--videos", help="folder of videos (and its direct sub-folders)")
    source.add_argument("--index", help="an index folder written by tempclr-index (a corpus: hits are feature ids)")
    parser.add_argument("--config", required=True, help="run config (model, dataset.bert_name, eval.save_path)")
    parser.add_argument("--checkpoint", default="checkpoint_best.pt", help="joined to eval.save_path")
    parser.add_argument("--s3d_checkpoint", default=None, help="default pretrained_models/s3d_howto100m.pth")
    parser.add_argument("--fdir", default=None, help="feature cache (default <videos>/.s3d_features)")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=224, help="crop side (224 for the released S3D)")
    args = parser.parse_args(argv)
    if args.topk < 1:
        parser.error("--topk must be >= 1")
    try:
        if args.index is not None:
            from tempclr.evaluators.video_index import search_index

            if args.fdir is not None:
                parser.error("--fdir is for --videos; an index reads the feature folder it was built from")
            results = search_index(args.index, args.config, args.queries, checkpoint=args.checkpoint,
                                   s3d_checkpoint=args.s3d_checkpoint, topk=args.topk, device=args.device)
        else:
            results = search(args.videos, args.config, args.queries, checkpoint=args.checkpoint,
                             s3d_checkpoint=args.s3d_checkpoint, fdir=args.fdir, topk=args.topk, size=args.size,
                             device=args.device)
    except (FileNotFoundError, ValueError, ExtractError) as error:
        print(f"tempclr-search-videos: error: {error}", file=sys.stderr)
        return 1
    for query, hits in results.items():
        print(f"query: {query}")
        for rank, hit in enumerate(hits, 1):
            seconds = ", ".join(f"{s}s ({v:.3f})" for s, v in hit.seconds)
            print(f"  {rank}. {hit.video}  score {hit.score:.4f}  best seconds: {seconds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
