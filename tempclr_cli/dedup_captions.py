"""``tempclr-dedup-captions``: the command line of :mod:`tempclr.processors.dedupprocessor` (argument parsing only;
the work and its documentation are there)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

import tempclr.processors.dedupprocessor as _library
from tempclr.processors.dedupprocessor import CaptionDedupProcessor
from tempclr.utils.fileio import output_dir_problem


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="tempclr-dedup-captions",
                                     description=_library.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", help="raw captions .json or .pkl (default <how2dir>/raw_caption.json)")
    parser.add_argument("--out", help="output .pkl (default <how2dir>/raw_caption_dedup.pkl)")
    parser.add_argument("--how2dir", default=None, help="the original's flag: folder of raw_caption.json")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-video draws (default 0)")
    parser.add_argument("--feat-dir", default=None, help="per-video features, for the video-length statistics")
    args = parser.parse_args(argv)
    if args.captions is None and args.how2dir is None:
        parser.error("give --captions (and --out), or --how2dir")
    captions = args.captions or os.path.join(args.how2dir, "raw_caption.json")
    out = args.out or os.path.join(args.how2dir or os.path.dirname(captions), "raw_caption_dedup.pkl")
    if os.path.abspath(out) == os.path.abspath(captions):
        parser.error(f"--out {out} would overwrite the input captions")
    problem = output_dir_problem(os.path.dirname(os.path.abspath(out)))
    if problem is None and os.path.isdir(out):
        problem = f"--out {out} is a folder; give the output .pkl file"
    if problem is not None:  # before the captions are read and de-duplicated, not after
        parser.error(f"--out: {problem}")
    processor = CaptionDedupProcessor(captions, seed=args.seed, feat_dir=args.feat_dir)
    processor()
    processor.finalize(out)
    print(f"{len(processor.data)} videos -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
