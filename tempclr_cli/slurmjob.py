"""SLURM jobs: a training config → an sbatch script that runs one ``fairseq-train`` rank per GPU over ``srun``.

Job types: ``slurm_small`` (1 node × 2 GPUs), ``slurm_big`` (1 node × 8 GPUs), and ``slurm``, whose size is the
config's ``slurm_config: small | big``.  A ``slurm:`` section of the config, then the launcher's flags, override
the size and add the cluster's settings:

    slurm:
      nodes: 2              # --nodes
      gpus_per_node: 4      # --gpus-per-node; 0 runs CPU ranks (gloo)
      ranks_per_node: 4     # tasks per node; default gpus_per_node (required when gpus_per_node is 0)
      cpus_per_task: 8      # --cpus-per-task (also each rank's OMP_NUM_THREADS)
      mem: 64G              # --mem (per node)
      time: "72:00:00"      # --time
      partition: gpu        # --partition
      account: myproject    # --account
      qos: normal           # --qos
      constraint: a100      # --constraint
      job_name: tempclr     # --job-name (default: the config file's name)
      requeue: true         # --requeue: a preempted job goes back to the queue and resumes from its checkpoint
      port: 29500           # the rendezvous port on the first node (default 20000 + job id % 20000)
      setup: ["module load cuda"]   # shell lines run before srun (environment modules, conda ...)

The script goes to ``<save_dir>/slurm/<job_name>.sbatch`` (``--output`` / ``--error`` next to it as
``<job_name>-<job id>.out/.err``), and is submitted with ``sbatch`` when that command exists; otherwise the
launcher prints how to submit it.  ``--dryrun`` prints the script and writes nothing.  Each task runs
:mod:`tempclr_cli.slurm_rank`, which turns SLURM's variables into fairseq's rank flags.  A requeued or resubmitted
job runs the same command, so fairseq resumes from ``<save_dir>/checkpoint_last.pt``.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from typing import Any, Dict, List, Optional

from omegaconf import OmegaConf

from tempclr.utils.fileio import check_name, write_text_atomic
from tempclr.utils.load_config import cfg_get, load_config, read_config

from .localjob import CPU_DDP_BACKENDS, _replace_flag, fairseq_flags, resolve_job_type, train_command, world_size

PRESETS = {"small": {"nodes": 1, "gpus_per_node": 2}, "big": {"nodes": 1, "gpus_per_node": 8}}
INT_KEYS = ("nodes", "gpus_per_node", "ranks_per_node", "cpus_per_task", "port")
STR_KEYS = ("mem", "time", "partition", "account", "qos", "constraint", "job_name")
SETTINGS = INT_KEYS + STR_KEYS + ("requeue", "setup")
# sbatch directive of each setting that maps one to one
DIRECTIVES = (("cpus_per_task", "cpus-per-task"), ("mem", "mem"), ("time", "time"), ("partition", "partition"),
              ("account", "account"), ("qos", "qos"), ("constraint", "constraint"))


def _control_free(name: str, value: str) -> str:
    """``value`` when it holds no newline or other control character (it is written into the sbatch script,
    where a newline would start a directive or command of its own); else a ``ValueError`` naming ``name``."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{name}: {value!r} holds a newline or another control character; it goes into the sbatch "
                         "script, where that would start a line of its own: remove it")
    return value


def slurm_settings(config: Any, job_type: str, overrides: Optional[Dict[str, Any]] = None,
                   config_file: str = "the config") -> Dict[str, Any]:
    """The job's settings: the size preset of ``job_type`` (``slurm`` reads ``slurm_config``), then the config's
    ``slurm:`` section, then ``overrides`` (the launcher's flags; None values are not set)."""
    if job_type == "slurm":
        size = cfg_get(config, "slurm_config")
        if size not in PRESETS:
            raise ValueError(f"{config_file}: --jobtype slurm takes its size from 'slurm_config: small' or "
                             f"'slurm_config: big' (got {size!r}); or use --jobtype slurm_small / slurm_big")
    else:
        size = job_type[len("slurm_"):]
    settings: Dict[str, Any] = dict(PRESETS[size])
    section = cfg_get(config, "slurm", {})
    section = OmegaConf.to_container(section) if OmegaConf.is_config(section) else dict(section)
    for source, values in ((f"{config_file}: slurm", section), ("--", overrides or {})):
        for key, value in values.items():
            if value is None:
                continue
            name = f"{source}.{key}" if source != "--" else "--" + key.replace("_", "-")
            if key not in SETTINGS:
                raise ValueError(f"{name}: unknown SLURM setting; known: {', '.join(SETTINGS)}")
            if key in INT_KEYS and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{name}: must be a non-negative integer, got {value!r}")
            if key == "setup" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise ValueError(f"{name}: must be a list of shell lines, got {value!r}")
            if key == "setup":  # shell lines by design, one line each
                for index, line in enumerate(value):
                    _control_free(f"{name}[{index}]", line)
            if key in STR_KEYS:
                if isinstance(value, bool) or not isinstance(value, (str, int)):
                    raise ValueError(f"{name}: must be a string, got {value!r}")
                value = _control_free(name, str(value))
            if key == "job_name":  # names <save_dir>/slurm/<job_name>.sbatch
                check_name(value, name, None, "value")
            settings[key] = value
    if settings["nodes"] < 1:
        raise ValueError(f"{config_file}: slurm.nodes must be at least 1")
    if settings.get("ranks_per_node") is None:
        if settings["gpus_per_node"] == 0:
            raise ValueError(f"{config_file}: slurm.gpus_per_node is 0 (CPU ranks): set slurm.ranks_per_node")
        settings["ranks_per_node"] = settings["gpus_per_node"]
    if settings["gpus_per_node"] and settings["ranks_per_node"] != settings["gpus_per_node"]:
        raise ValueError(f"{config_file}: slurm.ranks_per_node ({settings['ranks_per_node']}) must equal "
                         f"slurm.gpus_per_node ({settings['gpus_per_node']}): one rank per GPU")
    if settings["ranks_per_node"] < 1:
        raise ValueError(f"{config_file}: slurm.ranks_per_node must be at least 1")
    if "job_name" not in settings:
        settings["job_name"] = _control_free(f"{config_file}: the job name (the config file's name; set "
                                             "slurm.job_name)", os.path.splitext(os.path.basename(config_file))[0])
    return settings


class SlurmJob:
    """One training config → one sbatch script (see the module docstring)."""

    def __init__(self, config_file: str, job_type: Optional[str] = None, dryrun: bool = False,
                 overrides: Optional[Dict[str, Any]] = None):
        self.config_file = config_file
        self.dryrun = dryrun
        # read only: save_dir and its config.yaml are written once every setting has been checked
        self.config = read_config(config_file=config_file)
        self.job_type = resolve_job_type(self.config, job_type, config_file)
        if not self.job_type.startswith("slurm"):
            raise ValueError(f"{config_file}: job type {self.job_type} is not a SLURM job")
        self.settings = slurm_settings(self.config, self.job_type, overrides, config_file)
        self.world_size = self.settings["nodes"] * self.settings["ranks_per_node"]
        configured = world_size(self.config, "local_small", None, config_file)
        if cfg_get(self.config, "fairseq.distributed_training.distributed_world_size") is not None \
                and configured != self.world_size:
            raise ValueError(f"{config_file}: fairseq.distributed_training.distributed_world_size is {configured} "
                             f"but the SLURM job has {self.settings['nodes']} nodes x "
                             f"{self.settings['ranks_per_node']} ranks = {self.world_size}; make them agree")
        self.save_dir = str(cfg_get(self.config, "fairseq.checkpoint.save_dir"))
        self.script_path = os.path.join(self.save_dir, "slurm", f"{self.settings['job_name']}.sbatch")
        _control_free(f"{config_file}: fairseq.checkpoint.save_dir", self.save_dir)
        _control_free("the config file's path", config_file)
        _control_free("the working folder", os.getcwd())
        self.config = load_config(config_file=config_file, dryrun=dryrun, config=self.config)

    def train_command(self) -> List[str]:
        """The command every task runs (before its rank flags)."""
        gpus = self.settings["gpus_per_node"] > 0
        flags = fairseq_flags(self.config, cuda=gpus)
        if not gpus:
            ddp = flags[flags.index("--ddp-backend") + 1] if "--ddp-backend" in flags else None
            if ddp not in CPU_DDP_BACKENDS:
                flags = _replace_flag(flags, "--ddp-backend", "legacy_ddp")
        return train_command(self.config_file) + flags

    def script(self) -> str:
        """The sbatch script.  Every value from the config or the command line is free of control characters
        (checked in :func:`slurm_settings` and the constructor) and shell-quoted where it lands, ``#SBATCH`` lines included
        (``shlex.quote`` leaves plain values such as ``gpu`` or ``72:00:00`` as they are)."""
        s = self.settings
        q = shlex.quote
        log = os.path.join(os.path.abspath(self.save_dir), "slurm", s["job_name"])
        lines = ["#!/bin/bash",
                 f"# written by tempclr-launch for {q(self.config_file)} (job type {self.job_type}): "
                 f"{s['nodes']} node(s) x {s['ranks_per_node']} rank(s)",
                 f"#SBATCH --job-name={q(s['job_name'])}",
                 f"#SBATCH --nodes={s['nodes']}",
                 f"#SBATCH --ntasks-per-node={s['ranks_per_node']}"]
        if s["gpus_per_node"]:
            lines.append(f"#SBATCH --gpus-per-node={s['gpus_per_node']}")
        lines += [f"#SBATCH --{directive}={q(str(s[key]))}" for key, directive in DIRECTIVES if s.get(key) is not None]
        lines += [f"#SBATCH --output={q(log + '-%j.out')}", f"#SBATCH --error={q(log + '-%j.err')}"]
        if s.get("requeue"):
            lines += ["#SBATCH --requeue", "#SBATCH --open-mode=append"]
        port = str(s["port"]) if s.get("port") is not None else "$((20000 + SLURM_JOB_ID % 20000))"
        lines += ["set -euo pipefail",
                  f"cd {shlex.quote(os.getcwd())}",
                  f"export PATH={shlex.quote(os.path.dirname(sys.executable))}:\"$PATH\"",
                  'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
                  f'export MASTER_PORT="{port}"',
                  'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"']
        lines += list(s.get("setup") or [])
        task = [sys.executable, "-m", "tempclr_cli.slurm_rank", "--"] + self.train_command()
        lines.append("srun --kill-on-bad-exit=1 --distribution=block " + " ".join(q(c) for c in task))
        return "\n".join(lines) + "\n"

    def submit(self) -> int:
        """``--dryrun``: print the script.  Else write it and submit it with ``sbatch`` (or say how)."""
        text = self.script()
        if self.dryrun:
            print(f"# {self.script_path} (not written: --dryrun)")
            print(text, end="", flush=True)
            return 0
        write_text_atomic(self.script_path, text)
        print(f"wrote {self.script_path}", flush=True)
        sbatch = shutil.which("sbatch")
        if sbatch is None:
            print(f"[tempclr] sbatch is not on this machine: submit the job on the cluster with\n"
                  f"    sbatch {shlex.quote(self.script_path)}", flush=True)
            return 0
        print("launching sbatch", shlex.quote(self.script_path), flush=True)
        return subprocess.call([sbatch, self.script_path])
