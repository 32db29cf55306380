"""Launch tempclr jobs from YAML configs (``python locallaunch.py ...`` or the ``tempclr-launch`` command).

    python locallaunch.py CONFIG[,CONFIG2,...] [--jobtype local_single|local_small|local_big|local_predict] [--dryrun]

Each config becomes one command (see ``tempclr_cli/localjob.py``): ``fairseq-train CONFIG --user-dir tempclr
--task mmtask --arch mmarch --criterion mmloss <flags from config.fairseq>`` or ``python tempclr_cli/predict.py
CONFIG``.  Several comma-separated configs run one after another and stop at the first failure.  A ``.py``
file is run with this Python.  ``--dryrun`` prints the commands and changes nothing on disk.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

from tempclr_cli.localjob import JOB_TYPES, LocalJob


def launch(path: str, jobtype: str | None, dryrun: bool) -> int:
    if path.endswith(".py"):
        print("launching", sys.executable, path, flush=True)
        return 0 if dryrun else subprocess.call([sys.executable, path])
    return LocalJob(path, jobtype, dryrun).submit()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("yamls", help="comma-separated config files")
    parser.add_argument("--jobtype", choices=JOB_TYPES, default=None,
                        help="overrides the config's task_type (sweep_* or none runs as local_single)")
    parser.add_argument("--dryrun", action="store_true", help="print the commands; run and write nothing")
    args = parser.parse_args(argv)
    for path in [p for p in args.yamls.split(",") if p]:
        status = launch(path, args.jobtype, args.dryrun)
        if status != 0:
            print(f"[tempclr] {path}: command exited with status {status}", file=sys.stderr)
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
