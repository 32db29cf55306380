"""Turn a YAML run config into the shell command that runs it, and run it.

Differences from the original, on purpose:
- binary flags (``fp16``, ``bf16``, ``reset_*``, ...) are emitted only when true;
- ``--dryrun`` prints the command and writes/creates nothing;
- on a machine without CUDA the printed command is the one that runs: ``--cpu`` is added and
  ``--fp16``/``--bf16`` are dropped, with a one-line note saying so.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from typing import Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from tempclr.utils.config_schema import FAIRSEQ_GROUPS
from tempclr.utils.load_config import cfg_get, load_config

BINARY_FLAGS = {"fp16", "bf16", "reset_optimizer", "reset_dataloader", "reset_meters", "reset_lr_scheduler",
                "cpu", "no_epoch_checkpoints", "no_last_checkpoints", "no_save", "memory_efficient_fp16"}
HALF_PRECISION_FLAGS = {"fp16", "bf16", "memory_efficient_fp16"}
# fairseq-train flags that are not options of fairseq-train (read by tempclr's predict.py only)
PREDICT_ONLY_KEYS = {"common_eval": {"path"}}
WORLD_SIZE = {"local_single": None, "local_small": 2, "local_big": 8}
JOB_TYPES = ("local_single", "local_small", "local_big", "local_predict")


def _cuda_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def fairseq_flags(config: DictConfig, cuda: bool) -> List[str]:
    """The ``fairseq-train`` flags for ``config.fairseq``, in YAML order.  ``lr`` takes the first element
    of its list; ``adam_betas`` is single-quoted; binary flags appear only when true."""
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
            if key in BINARY_FLAGS:
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
        print(f"[tempclr] note: {note}", file=sys.stderr, flush=True)
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


class LocalJob:
    """One run config → one local command (``fairseq-train`` or ``predict.py``)."""

    def __init__(self, config_file: str, job_type: Optional[str] = None, dryrun: bool = False):
        self.config_file = config_file
        self.dryrun = dryrun
        self.config = load_config(config_file=config_file, dryrun=dryrun)
        self.job_type = resolve_job_type(self.config, job_type, config_file)

    def command(self) -> List[str]:
        if self.job_type == "local_predict":
            return [sys.executable, os.path.join("tempclr_cli", "predict.py"), self.config_file]
        cuda = _cuda_available()
        cmd = ["fairseq-train", self.config_file, "--user-dir", "tempclr",
               "--task", "mmtask", "--arch", "mmarch", "--criterion", "mmloss"]
        cmd += fairseq_flags(self.config, cuda)
        world_size = WORLD_SIZE[self.job_type]
        if world_size is not None:
            cmd += ["--distributed-world-size", str(world_size)]
        batch_size = cfg_get(self.config, "fairseq.dataset.batch_size")
        if self.job_type in ("local_single", "local_small") and batch_size is not None and batch_size > 32:
            print(f"[tempclr] warning: batch_size {batch_size} > 32 on a {self.job_type} job", file=sys.stderr)
        return cmd

    def submit(self) -> int:
        """Print the command; unless dry-running, run it and return its exit status."""
        cmd = self.command()
        print("launching", " ".join(shlex.quote(c) for c in cmd), flush=True)
        if self.dryrun:
            return 0
        return subprocess.call(cmd, env=_child_env())


def _child_env() -> Dict[str, str]:
    """The launcher's environment, with this interpreter's bin dir first on PATH so that the
    ``fairseq-train`` of the same environment runs."""
    env = dict(os.environ)
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env
