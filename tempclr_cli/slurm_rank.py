"""One rank of a SLURM job: read the rank from SLURM's variables and run ``fairseq-train`` as that rank.

The sbatch script written by :mod:`tempclr_cli.slurmjob` starts one copy of this per task with ``srun``:

    srun python -m tempclr_cli.slurm_rank -- fairseq-train CONFIG --user-dir tempclr ... [--cpu]

Each copy appends ``--distributed-world-size $SLURM_NTASKS --distributed-rank $SLURM_PROCID
--distributed-init-method tcp://$MASTER_ADDR:$MASTER_PORT --distributed-no-spawn`` and, on GPUs,
``--device-id $SLURM_LOCALID`` (the GPU of this task on its node); with ``--cpu`` in the command the ranks join over
gloo instead.  Then it replaces itself with that command, so SLURM signals (preemption, ``scancel``) reach
fairseq-train directly.
"""
from __future__ import annotations

import os
import shlex
import sys
from typing import List, Mapping, Sequence

REQUIRED = ("SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", "MASTER_ADDR", "MASTER_PORT")


def _int(env: Mapping[str, str], name: str) -> int:
    value = env[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None


def rank_flags(env: Mapping[str, str], cpu: bool) -> List[str]:
    """The ``fairseq-train`` flags of the task described by ``env`` (SLURM's variables plus ``MASTER_ADDR`` /
    ``MASTER_PORT``).  Global rank = ``SLURM_PROCID`` (0 .. ``SLURM_NTASKS``-1), device = ``SLURM_LOCALID``."""
    missing = [name for name in REQUIRED if name not in env]
    if missing:
        raise ValueError(f"{', '.join(missing)} not set: tempclr_cli.slurm_rank runs inside a SLURM job step "
                         "(srun) started by the sbatch script tempclr-launch writes")
    world, rank, local = _int(env, "SLURM_NTASKS"), _int(env, "SLURM_PROCID"), _int(env, "SLURM_LOCALID")
    if not 0 <= rank < world:
        raise ValueError(f"SLURM_PROCID={rank} is outside 0..{world - 1} (SLURM_NTASKS={world})")
    flags = ["--distributed-world-size", str(world), "--distributed-rank", str(rank),
             "--distributed-init-method", f"tcp://{env['MASTER_ADDR']}:{_int(env, 'MASTER_PORT')}",
             "--distributed-no-spawn"]
    if cpu:
        return flags + ["--distributed-backend", "gloo"]
    return flags + ["--device-id", str(local)]


def rank_command(command: Sequence[str], env: Mapping[str, str]) -> List[str]:
    """``command`` (a ``fairseq-train`` command line) with this task's rank flags appended."""
    if not command:
        raise ValueError("no command after '--': usage: python -m tempclr_cli.slurm_rank -- fairseq-train ...")
    return list(command) + rank_flags(env, cpu="--cpu" in command)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    cmd = rank_command(args, os.environ)
    if os.environ.get("SLURM_PROCID") == "0":
        print("[tempclr] rank 0 runs " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    os.execvp(cmd[0], cmd)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
