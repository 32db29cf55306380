"""Turn a YAML run config into the shell commands that run it, and run them.

Job types: ``local_single`` (one process), ``local_small`` / ``local_big`` (2 / 8 ranks by default, any number with
``--nproc N`` or ``fairseq.distributed_training.distributed_world_size``), ``local_predict`` (``predict.py``), and
``slurm`` / ``slurm_small`` / ``slurm_big`` (an sbatch script, :mod:`tempclr_cli.slurmjob`).

Several ranks on one machine:
- with CUDA, one ``fairseq-train`` command with ``--distributed-world-size N``: fairseq starts one process per
  GPU itself (NCCL).  Fewer GPUs than ranks is an error before anything runs;
- without CUDA, N ``fairseq-train`` processes started here, one per rank, joined over gloo on a free local TCP port
  (``--distributed-rank R --distributed-backend gloo --distributed-init-method tcp://127.0.0.1:PORT
  --distributed-no-spawn``) with ``--ddp-backend legacy_ddp`` (PyTorch's DDP wrapper wants device ids, which a CPU
  module has none of).  Each rank gets ``cores // N`` threads unless ``OMP_NUM_THREADS`` is set.  When one rank
  fails the others are stopped and the launcher returns its exit status.

Differences from the original, on purpose:
- binary flags (``fp16``, ``bf16``, ``reset_*``, ...) are emitted only when true;
- ``--dryrun`` prints the commands and writes/creates nothing;
- on a machine without CUDA the printed command is the one that runs: ``--cpu`` is added and
  ``--fp16``/``--bf16`` are dropped, with a one-line note saying so;
- ``local_small`` / ``local_big`` really train on several processes, also without GPUs (the original appended
  ``--distributed-world-size 2/8``, which fails on a machine without that many GPUs).
"""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from tempclr.utils.config_schema import FAIRSEQ_GROUPS
from tempclr.utils.load_config import cfg_get, load_config

BINARY_FLAGS = {"fp16", "bf16", "reset_optimizer", "reset_dataloader", "reset_meters", "reset_lr_scheduler",
                "cpu", "no_epoch_checkpoints", "no_last_checkpoints", "no_save", "memory_efficient_fp16"}
HALF_PRECISION_FLAGS = {"fp16", "bf16", "memory_efficient_fp16"}
# fairseq-train flags that are not options of fairseq-train (read by tempclr's predict.py only)
PREDICT_ONLY_KEYS = {"common_eval": {"path"}}
WORLD_SIZE = {"local_single": 1, "local_small": 2, "local_big": 8}
SLURM_JOB_TYPES = ("slurm", "slurm_small", "slurm_big")
JOB_TYPES = ("local_single", "local_small", "local_big", "local_predict") + SLURM_JOB_TYPES
# fairseq.distributed_training keys the launcher sets for each rank: a config must not set them
LAUNCHER_KEYS = ("distributed_rank", "distributed_init_method", "distributed_no_spawn", "device_id",
                 "distributed_num_procs")
WORLD_SIZE_KEY = "fairseq.distributed_training.distributed_world_size"
# DDP wrappers that work on a CPU module (fairseq's own; no_c10d is its old name)
CPU_DDP_BACKENDS = ("legacy_ddp", "no_c10d")


def _cuda_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def _cuda_device_count() -> int:
    import torch
    return torch.cuda.device_count()


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _note(text: str) -> None:
    print(f"[tempclr] note: {text}", file=sys.stderr, flush=True)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def fairseq_flags(config: DictConfig, cuda: bool) -> List[str]:
    """The ``fairseq-train`` flags for ``config.fairseq``, in YAML order.  ``lr`` takes the first element
    of its list; ``adam_betas`` is single-quoted; binary flags (the original's list, and any key whose value is
    true/false: fairseq's boolean options are all store-true flags) appear only when true."""
    flags: List[str] = []
    notes: List[str] = []
    fairseq = cfg_get(config, "fairseq", {})
    for group in fairseq:
        if group not in FAIRSEQ_GROUPS:
            raise ValueError(f"unknown section 'fairseq.{group}' (known: {', '.join(FAIRSEQ_GROUPS)})")
        section = fairseq[group]
        for key in section:
            value = section[key]
            if key in PREDICT_ONLY_KEYS.get(group, ()):
                continue
            if group == "distributed_training" and key == "distributed_world_size":
                continue  # the job type / --nproc decide; see world_size()
            if key in BINARY_FLAGS or isinstance(value, bool):
                if not value:
                    continue
                if key in HALF_PRECISION_FLAGS and not cuda:
                    notes.append(_flag(key))
                    continue
                flags.append(_flag(key))
            elif value is None:
                continue
            elif key == "lr":
                first = value[0] if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else value
                flags += ["--lr", str(first)]
            elif key == "adam_betas":
                value = OmegaConf.to_container(value) if OmegaConf.is_list(value) else value
                flags += ["--adam-betas", str(tuple(value) if isinstance(value, list) else value)]
            else:
                flags += [_flag(key), str(value)]
    if not cuda:
        flags.append("--cpu")
        note = "no CUDA device: running on CPU (--cpu added"
        note += f", {' '.join(notes)} dropped)" if notes else ")"
        _note(note)
    return flags


def is_evaluation_config(config: DictConfig) -> bool:
    """A config that evaluates (``dataset.split: test``, or it names a ``predictor`` / ``metric``) rather than
    trains."""
    return cfg_get(config, "dataset.split") == "test" or any(cfg_get(config, key) is not None
                                                             for key in ("predictor", "metric"))


def resolve_job_type(config: DictConfig, jobtype: Optional[str], config_file: str = "the config") -> str:
    """``--jobtype`` wins; else ``task_type`` if it is a local job type; ``sweep_*`` or none → ``local_predict``
    for an evaluation config (:func:`is_evaluation_config`), ``local_single`` for a training one.  A training job
    type for an evaluation config is an error (fairseq-train would find no training data and create
    ``./checkpoints``)."""
    if jobtype is not None and jobtype not in JOB_TYPES:
        raise ValueError(f"unknown --jobtype {jobtype!r}; choose one of {', '.join(JOB_TYPES)}")
    evaluation = is_evaluation_config(config)
    task_type = cfg_get(config, "task_type")
    if jobtype is None:
        if task_type is not None and task_type not in JOB_TYPES and not str(task_type).startswith("sweep"):
            raise ValueError(f"{config_file}: 'task_type: {task_type}' is not a job type; "
                             f"use one of {', '.join(JOB_TYPES)} or pass --jobtype")
        jobtype = task_type if task_type in JOB_TYPES else ("local_predict" if evaluation else "local_single")
    if evaluation and jobtype != "local_predict":
        raise ValueError(f"{config_file} is an evaluation config (dataset.split: test / predictor / metric) but the "
                         f"job type is {jobtype}; run it with --jobtype local_predict")
    return jobtype


def world_size(config: DictConfig, job_type: str, nproc: Optional[int] = None,
               config_file: str = "the config") -> int:
    """Ranks of a local training job: ``--nproc`` wins, then ``fairseq.distributed_training.distributed_world_size``
    of the config, then the job type's default (``local_small`` 2, ``local_big`` 8).  ``local_single`` is one
    process: asking it for more is an error, as is a config that sets a key the launcher sets per rank."""
    for key in LAUNCHER_KEYS:
        if cfg_get(config, f"fairseq.distributed_training.{key}") is not None:
            raise ValueError(f"{config_file}: fairseq.distributed_training.{key} is set by the launcher for each "
                             "rank; remove it from the config")
    configured = cfg_get(config, WORLD_SIZE_KEY)
    if nproc is not None and nproc < 1:
        raise ValueError(f"--nproc {nproc}: the number of ranks must be at least 1")
    if configured is not None and (not isinstance(configured, int) or configured < 1):
        raise ValueError(f"{config_file}: {WORLD_SIZE_KEY} must be a positive integer, got {configured!r}")
    if job_type == "local_single":
        wanted = nproc if nproc is not None else configured
        if wanted is not None and wanted > 1:
            source = f"--nproc {nproc}" if nproc is not None else f"{WORLD_SIZE_KEY}: {configured} in {config_file}"
            raise ValueError(f"{source} asks for {wanted} ranks but --jobtype local_single runs one process; "
                             f"use --jobtype local_small (any number of ranks with --nproc)")
        return 1
    if nproc is not None:
        return nproc
    return configured if configured is not None else WORLD_SIZE[job_type]


def _replace_flag(flags: List[str], flag: str, value: str) -> List[str]:
    """``flags`` with ``flag value`` set: the existing value replaced, else appended."""
    out = list(flags)
    if flag in out:
        out[out.index(flag) + 1] = value
    else:
        out += [flag, value]
    return out


def cpu_rank_flags(flags: List[str], world: int) -> List[List[str]]:
    """Per-rank ``fairseq-train`` flags for ``world`` gloo ranks on this machine (rank r at index r).  The DDP
    wrapper becomes ``legacy_ddp`` unless the config already names a CPU-capable one, with a note."""
    ddp = flags[flags.index("--ddp-backend") + 1] if "--ddp-backend" in flags else None
    if ddp not in CPU_DDP_BACKENDS:
        flags = _replace_flag(flags, "--ddp-backend", "legacy_ddp")
        was = ddp or "fairseq's default, pytorch_ddp"
        _note(f"{world} CPU ranks: --ddp-backend legacy_ddp (was {was}, which needs GPUs)")
    backend = flags[flags.index("--distributed-backend") + 1] if "--distributed-backend" in flags else None
    if backend not in (None, "gloo"):
        _note(f"{world} CPU ranks: --distributed-backend gloo (was {backend}, which needs GPUs)")
    flags = [f for i, f in enumerate(flags) if f != "--distributed-backend"
             and (i == 0 or flags[i - 1] != "--distributed-backend")]
    init = f"tcp://127.0.0.1:{_free_port()}"
    return [flags + ["--distributed-world-size", str(world), "--distributed-rank", str(rank),
                     "--distributed-backend", "gloo", "--distributed-init-method", init, "--distributed-no-spawn"]
            for rank in range(world)]


def train_command(config_file: str) -> List[str]:
    """``fairseq-train CONFIG --user-dir tempclr --task mmtask --arch mmarch --criterion mmloss``."""
    return ["fairseq-train", config_file, "--user-dir", "tempclr",
            "--task", "mmtask", "--arch", "mmarch", "--criterion", "mmloss"]


class LocalJob:
    """One run config → the local commands that run it: one (``fairseq-train`` or ``predict.py``), or one per
    rank for several CPU ranks."""

    def __init__(self, config_file: str, job_type: Optional[str] = None, dryrun: bool = False,
                 nproc: Optional[int] = None):
        self.config_file = config_file
        self.dryrun = dryrun
        self.nproc = nproc
        if job_type in SLURM_JOB_TYPES:
            raise ValueError(f"--jobtype {job_type} is a SLURM job: use tempclr_cli.slurmjob.SlurmJob "
                             "(locallaunch.py picks it)")
        self.config = load_config(config_file=config_file, dryrun=dryrun)
        self.job_type = resolve_job_type(self.config, job_type, config_file)
        if self.job_type in SLURM_JOB_TYPES:
            raise ValueError(f"{config_file}: task_type {self.job_type} is a SLURM job: run it through "
                             "locallaunch.py")
        if nproc is not None and self.job_type == "local_predict":
            raise ValueError("--nproc is for training job types (local_small, local_big); "
                             f"{config_file} runs predict.py in one process")
        self.world_size = 1 if self.job_type == "local_predict" else world_size(
            self.config, self.job_type, nproc, config_file)

    def commands(self) -> List[List[str]]:
        """The commands to start, all at once: one, or one per rank (CPU, several ranks)."""
        if self.job_type == "local_predict":
            return [[sys.executable, os.path.join("tempclr_cli", "predict.py"), self.config_file]]
        cuda = _cuda_available()
        cmd = train_command(self.config_file) + fairseq_flags(self.config, cuda)
        batch_size = cfg_get(self.config, "fairseq.dataset.batch_size")
        if self.job_type in ("local_single", "local_small") and batch_size is not None and batch_size > 32:
            print(f"[tempclr] warning: batch_size {batch_size} > 32 on a {self.job_type} job", file=sys.stderr)
        if self.world_size == 1 and self.job_type == "local_single":
            return [cmd]
        if cuda:
            devices = _cuda_device_count()
            if devices < self.world_size:
                raise ValueError(f"{self.job_type} wants {self.world_size} ranks, one per GPU, but this machine has "
                                 f"{devices} CUDA device(s); pass --nproc {devices} (or fewer), or run it on SLURM "
                                 "(--jobtype slurm_small / slurm_big)")
            return [cmd + ["--distributed-world-size", str(self.world_size)]]
        return [train_command(self.config_file) + flags
                for flags in cpu_rank_flags(cmd[len(train_command(self.config_file)):], self.world_size)]

    def command(self) -> List[str]:
        """The single command of this job (for several CPU ranks: rank 0's)."""
        return self.commands()[0]

    def rank_env(self) -> Dict[str, str]:
        """The environment of each process: :func:`_child_env`, and for several CPU ranks
        ``OMP_NUM_THREADS = cores // ranks`` unless already set (N ranks × all cores would oversubscribe)."""
        env = _child_env()
        if self.world_size > 1 and not _cuda_available() and "OMP_NUM_THREADS" not in env:
            threads = max(1, (os.cpu_count() or 1) // self.world_size)
            env["OMP_NUM_THREADS"] = str(threads)
            _note(f"{self.world_size} CPU ranks: OMP_NUM_THREADS={threads} per rank (set it to override)")
        return env

    def submit(self) -> int:
        """Print the commands; unless dry-running, run them and return the exit status (the first failing
        rank's)."""
        commands = self.commands()
        for rank, cmd in enumerate(commands):
            label = f"(rank {rank}) " if len(commands) > 1 else ""
            print(f"launching {label}" + " ".join(shlex.quote(c) for c in cmd), flush=True)
        if self.dryrun:
            return 0
        env = self.rank_env()
        if len(commands) == 1:
            return subprocess.call(commands[0], env=env)
        return run_ranks(commands, env)


def run_ranks(commands: Sequence[List[str]], env: Dict[str, str], poll_s: float = 0.2,
              grace_s: float = 10.0) -> int:
    """Start every command at once and wait.  All exit 0 → 0.  When one exits non-zero (or the launcher is
    interrupted) the others are sent SIGTERM, then SIGKILL after ``grace_s``; returns the first non-zero status
    (a rank waiting in a collective for a dead peer would otherwise hang)."""
    procs = [subprocess.Popen(cmd, env=env) for cmd in commands]
    status = 0
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [c for c in codes if c not in (None, 0)]
            if failed:
                status = failed[0]
                rank = codes.index(status)
                print(f"[tempclr] rank {rank} exited with status {status}: stopping the other ranks",
                      file=sys.stderr, flush=True)
                break
            if all(c == 0 for c in codes):
                return 0
            time.sleep(poll_s)
    except KeyboardInterrupt:
        status = 130
    finally:
        _stop(procs, grace_s)
    return status


def _stop(procs: Sequence[subprocess.Popen], grace_s: float) -> None:
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in alive:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _child_env() -> Dict[str, str]:
    """The launcher's environment, with this interpreter's bin dir first on PATH so that the
    ``fairseq-train`` of the same environment runs."""
    env = dict(os.environ)
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env
