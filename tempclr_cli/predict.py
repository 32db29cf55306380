#!/usr/bin/env python
"""``tempclr-predict CONFIG`` (``python tempclr_cli/predict.py CONFIG``, what ``locallaunch.py --jobtype
local_predict`` runs): the command line of :mod:`tempclr.evaluators.evaluate` (argument parsing only; the work and
its documentation are there)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

import tempclr.evaluators.evaluate as _library
from tempclr.evaluators.evaluate import build_dataloader, checkpoints_to_evaluate, evaluate_checkpoints  # noqa: F401


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="tempclr-predict", description=_library.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("taskconfig")
    args = parser.parse_args(argv)
    if not os.path.basename(args.taskconfig).startswith("test"):
        raise ValueError(f"{args.taskconfig}: evaluation configs are named test*.yaml (the original's convention)")
    evaluate_checkpoints(args.taskconfig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
