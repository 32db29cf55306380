"""Launch tempclr jobs from YAML configs (``python locallaunch.py ...`` or the ``tempclr-launch`` command).

    python locallaunch.py CONFIG[,CONFIG2,...] [--jobtype TYPE] [--nproc N] [--dryrun]
        TYPE: local_single | local_small | local_big | local_predict | slurm | slurm_small | slurm_big

Each config becomes one command (see ``tempclr_cli/localjob.py``): ``fairseq-train CONFIG --user-dir tempclr
--task mmtask --arch mmarch --criterion mmloss <flags from config.fairseq>`` or ``python tempclr_cli/predict.py
CONFIG``; ``local_small`` / ``local_big`` train on 2 / 8 (or ``--nproc N``) ranks; the ``slurm*`` job types
write an sbatch script and submit it (``tempclr_cli/slurmjob.py``; ``--nodes``, ``--gpus-per-node`` ... override
the config's ``slurm:`` section).  Several comma-separated configs run one after another and stop at the first
failure.  A ``.py`` file is run with this Python.  ``--dryrun`` prints the commands (and scripts) and changes
nothing on disk.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

from tempclr.utils.load_config import cfg_get, recursive_config
from tempclr_cli.localjob import JOB_TYPES, SLURM_JOB_TYPES, LocalJob
from tempclr_cli.slurmjob import SlurmJob

SLURM_FLAGS = {"nodes": int, "gpus_per_node": int, "cpus_per_task": int, "partition": str, "account": str,
               "time": str}


def launch(path: str, jobtype: str | None, dryrun: bool, nproc: int | None = None,
           slurm: dict | None = None) -> int:
    if path.endswith(".py"):
        print("launching", sys.executable, path, flush=True)
        return 0 if dryrun else subprocess.call([sys.executable, path])
    slurm = {k: v for k, v in (slurm or {}).items() if v is not None}
    is_slurm = jobtype in SLURM_JOB_TYPES if jobtype is not None else \
        cfg_get(recursive_config(path), "task_type") in SLURM_JOB_TYPES
    if is_slurm:
        if nproc is not None:
            raise ValueError("--nproc is for local jobs; a SLURM job has --nodes x --gpus-per-node ranks")
        return SlurmJob(path, jobtype, dryrun, overrides=slurm).submit()
    if slurm:
        raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in slurm)}: SLURM settings, but the job "
                         "type is local; pass --jobtype slurm_small / slurm_big / slurm")
    return LocalJob(path, jobtype, dryrun, nproc=nproc).submit()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("yamls", help="comma-separated config files")
    parser.add_argument("--jobtype", choices=JOB_TYPES, default=None,
                        help="overrides the config's task_type (sweep_* or none runs as local_single)")
    parser.add_argument("--dryrun", action="store_true", help="print the commands; run and write nothing")
    parser.add_argument("--nproc", type=int, default=None,
                        help="ranks of a local_small / local_big job (default 2 / 8, or the config's "
                             "fairseq.distributed_training.distributed_world_size)")
    for key, kind in SLURM_FLAGS.items():
        parser.add_argument("--" + key.replace("_", "-"), type=kind, default=None,
                            help=f"SLURM jobs: overrides slurm.{key} of the config")
    args = parser.parse_args(argv)
    slurm = {key: getattr(args, key) for key in SLURM_FLAGS}
    for path in [p for p in args.yamls.split(",") if p]:
        status = launch(path, args.jobtype, args.dryrun, args.nproc, slurm)
        if status != 0:
            print(f"[tempclr] {path}: command exited with status {status}", file=sys.stderr)
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
