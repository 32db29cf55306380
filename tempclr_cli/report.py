#!/usr/bin/env python
"""``tempclr-report CHECKPOINT [--data-root DIR] [--out FILE.json]``: the command line of
:mod:`tempclr.evaluators.report` (argument parsing only; the work and its documentation are there)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

import tempclr.evaluators.report as _library
from tempclr.evaluators.report import format_table, run_report, write_report


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="tempclr-report", description=_library.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="the checkpoint to evaluate")
    parser.add_argument("--data-root", default="data", help="folder laid out as data/ in the configs (default data)")
    parser.add_argument("--out", default=None,
                        help="the JSON report (default: report.json in the work folder)")
    parser.add_argument("--work-dir", default=None,
                        help="derived configs and predictions (default runs/report/<checkpoint name>)")
    parser.add_argument("--model-config", default=None,
                        help="training config giving the BERT and model size (default: config.yaml beside the "
                             "checkpoint when it exists, else the benchmark configs' own)")
    parser.add_argument("--skip", nargs="+", default=[], metavar="NAME",
                        help="benchmarks to leave out (" + ", ".join(b.name for b in _library.BENCHMARKS) + ")")
    args = parser.parse_args(argv)
    work_dir = args.work_dir or os.path.join("runs", "report",
                                             os.path.splitext(os.path.basename(args.checkpoint))[0])
    model_config = args.model_config
    if model_config is None:
        beside = os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "config.yaml")
        model_config = beside if os.path.isfile(beside) else None
    print(f"model config: {model_config or '(the benchmark configs as written)'}")
    report = run_report(args.checkpoint, args.data_root, work_dir, model_config, skip=args.skip)
    out = args.out or os.path.join(work_dir, "report.json")
    write_report(report, out)
    print(format_table(report))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
