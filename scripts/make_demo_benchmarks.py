"""Write the demo benchmark sets beside the demo data (``make demo-benchmarks`` runs this; ``make demo`` does
not, so its time and data do not change).  Each set is drawn from the same world as the demo (``--seed``) with a
stream of its own (tempclr/demo/<dataset>.py)::

    <out>/msrvtt/   MSR-VTT and MSR-VTT QA files, features/  (tempclr/demo/msrvtt.py)
    <out>/coin/     COIN.json, features/          (tempclr/demo/coin.py)
    <out>/didemo/   test_data.json, features/     (tempclr/demo/didemo.py)

Usage: ``python scripts/make_demo_benchmarks.py [--out data/demo] [--seed 0]``; the sets are evaluated with
configs/demo/test_vtt_zs.yaml, test_vttqa_zs.yaml, test_coin_zs.yaml and test_didemo_zs.yaml (and fine-tuned with
configs/demo/vtt_videoclip.yaml and coin_videoclip.yaml).
"""
from __future__ import annotations

import argparse
import json
import os

from tempclr.demo.coin import write_coin_set
from tempclr.demo.didemo import write_didemo_set
from tempclr.demo.msrvtt import write_msrvtt_set
from tempclr.demo.world import World

__all__ = ["make_demo_benchmarks"]


def make_demo_benchmarks(out: str = "data/demo", seed: int = 0) -> dict:
    """Write the MSR-VTT, COIN and DiDeMo demo sets under ``out``; returns their summaries by name."""
    world = World(seed)
    return {"msrvtt": write_msrvtt_set(world, os.path.join(out, "msrvtt"), seed=seed),
            "coin": write_coin_set(world, os.path.join(out, "coin"), seed=seed),
            "didemo": write_didemo_set(world, os.path.join(out, "didemo"), seed=seed)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/demo", help="the demo data folder (default data/demo)")
    parser.add_argument("--seed", type=int, default=0, help="the demo world's seed (default 0, as make demo)")
    args = parser.parse_args(argv)
    print(f"demo benchmark sets in {args.out}: {json.dumps(make_demo_benchmarks(args.out, args.seed))}")


if __name__ == "__main__":
    main()
