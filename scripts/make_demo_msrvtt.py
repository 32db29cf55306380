"""Write the MSR-VTT / MSR-VTT-QA demo sets (tempclr/demo/msrvtt.py) from the demo world, for
configs/demo/test_vtt_zs.yaml and configs/demo/test_vttqa_zs.yaml.  Not part of `make demo` (its data and time are
unchanged); `make demo-benchmarks` writes this set with the others (scripts/make_demo_benchmarks.py).

Usage: ``python scripts/make_demo_msrvtt.py [--out data/demo/msrvtt] [--seed 0] [--world-seed 0]``; the world seed
must be the one data/demo was made with (its tiny BERT knows that world's words).
"""
from __future__ import annotations

import argparse
import json

from tempclr.demo.msrvtt import write_msrvtt_set
from tempclr.demo.world import World


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/demo/msrvtt", help="output folder (default data/demo/msrvtt)")
    parser.add_argument("--seed", type=int, default=0, help="this set's seed (default 0)")
    parser.add_argument("--world-seed", type=int, default=0, help="the demo world's seed (default 0)")
    args = parser.parse_args(argv)
    summary = write_msrvtt_set(World(args.world_seed), args.out, seed=args.seed)
    print(f"demo MSR-VTT set in {args.out}: {json.dumps(summary)}")


if __name__ == "__main__":
    main()
