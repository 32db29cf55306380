"""Config loading: OmegaConf YAML with ``includes`` stacking, and one helper for optional keys.

The original code relied on OmegaConf < 2.1, where reading a missing key gave ``None``; fairseq-fixed pins
OmegaConf 2.3, which raises instead.  Every optional read in tempclr therefore goes through :func:`cfg_get`
(:mod:`tempclr.utils.config_schema`, re-exported here), or ``setting`` for keys with a default.
"""
from __future__ import annotations

import os
import re
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from .config_schema import cfg_get, validate_config
from .distributed import get_rank
from .fileio import write_text_atomic
from .save_dir_lock import save_dir_locked

__all__ = ["cfg_get", "recursive_config", "read_config", "load_config", "next_run_dir", "save_config_atomic",
           "rerooted_values"]



def recursive_config(config_path: str) -> DictConfig:
    """Load a YAML config; if it has ``includes: <path>``, load that base first (recursively, any depth) and
    merge this file over it (child keys win, dicts merge deeply)."""
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"config file not found: {config_path}")
    config = OmegaConf.load(config_path)
    if config is None or (OmegaConf.is_dict(config) and len(config) == 0):
        raise ValueError(f"{config_path}: the config file is empty (or holds only comments); write the run's keys "
                         "in it, or start from one of configs/ (e.g. 'includes: configs/demo/how2.yaml')")
    includes = config.pop("includes", None) if "includes" in config else None
    if includes is None:
        return config
    base_path = str(includes)
    if not os.path.isfile(base_path):
        # relative to the including file, if not relative to the working directory
        candidate = os.path.join(os.path.dirname(config_path), base_path)
        if not os.path.isfile(candidate):
            raise FileNotFoundError(
                f"{config_path}: 'includes: {base_path}' names a file that does not exist "
                f"(looked in the working directory and next to {config_path})")
        base_path = candidate
    base = recursive_config(base_path)
    return OmegaConf.merge(base, config)


def next_run_dir(save_dir: str, logdir: str) -> str:
    """``<save_dir>/<basename(logdir)>_<k>`` with ``k = 1 + max`` existing suffix among the entries of
    ``save_dir`` that start with that basename (``k = 0`` when there are none), as the original picks it."""
    name = os.path.basename(str(logdir).rstrip("/")) or "run"
    suffixes = []
    if os.path.isdir(save_dir):
        pattern = re.compile(re.escape(name) + r"_(\d+)$")
        for entry in os.listdir(save_dir):
            match = pattern.match(entry)
            if match:
                suffixes.append(int(match.group(1)))
    k = 1 + max(suffixes) if suffixes else 0
    return os.path.join(save_dir, f"{name}_{k}")


def save_config_atomic(config: DictConfig, path: str) -> None:
    """Write ``config`` as YAML to ``path`` through a temp file in the same folder."""
    write_text_atomic(path, OmegaConf.to_yaml(config))


def _config_file(args: Any, config_file: Optional[str]) -> str:
    if config_file is None:
        config_file = cfg_get(args, "taskconfig")
    if config_file is None:
        raise ValueError("load_config needs a config file (positional 'taskconfig' argument)")
    return str(config_file)


def read_config(args: Any = None, config_file: Optional[str] = None) -> DictConfig:
    """Read and check a run config, writing nothing: ``config_file`` or ``args.taskconfig`` names the YAML.

    The merged config is validated (:func:`~tempclr.utils.config_schema.validate_config`), ``dataset.subsampling``
    divides the fairseq batch size, and a training config (``dataset.split != "test"``) must name
    ``fairseq.checkpoint.save_dir``; ``fairseq.common.tensorboard_logdir`` is pointed at the next free
    ``<save_dir>/<logdir>_<k>``."""
    config_file = _config_file(args, config_file)
    config = recursive_config(config_file)
    validate_config(config, source=config_file)

    subsampling = cfg_get(config, "dataset.subsampling")
    batch_size = cfg_get(config, "fairseq.dataset.batch_size")
    if subsampling is not None and batch_size is not None and subsampling > 1:
        config.fairseq.dataset.batch_size = batch_size // subsampling

    if cfg_get(config, "dataset.split") != "test":
        save_dir = cfg_get(config, "fairseq.checkpoint.save_dir")
        if save_dir is None:
            raise ValueError(
                f"{config_file}: training configs need 'fairseq.checkpoint.save_dir' (where checkpoints go); "
                "add it, or set 'dataset.split: test' for an evaluation config")
        logdir = cfg_get(config, "fairseq.common.tensorboard_logdir")
        if logdir is not None:
            config.fairseq.common.tensorboard_logdir = next_run_dir(save_dir, logdir)
    return config


def load_config(args: Any = None, config_file: Optional[str] = None, dryrun: bool = False,
                config: Optional[DictConfig] = None) -> DictConfig:
    """Load a run config: :func:`read_config` (or ``config``, one it already returned), then, for a training
    config, unless ``dryrun`` or on a rank other than 0, create ``save_dir`` and save the merged config to
    ``<save_dir>/config.yaml`` while holding ``save_dir``'s lock (:mod:`tempclr.utils.save_dir_lock`): when another
    run holds it, this raises ``SaveDirInUseError`` before writing.  With ``dryrun`` the run directory that would be
    used is still filled in, but nothing is created or written.
    """
    if config is None:
        config = read_config(args, config_file)
    if cfg_get(config, "dataset.split") != "test" and not dryrun and get_rank() == 0:
        # the other ranks of a run leave save_dir to rank 0
        save_dir = str(cfg_get(config, "fairseq.checkpoint.save_dir"))
        os.makedirs(save_dir, exist_ok=True)
        # a run that holds save_dir's lock (another training) makes this fail before anything is written
        with save_dir_locked(save_dir):
            save_config_atomic(config, os.path.join(save_dir, "config.yaml"))
    return config


def rerooted_values(config: Any, prefix: str, root: str) -> DictConfig:
    """The overrides that move every string value of ``config`` equal to ``prefix`` or starting with
    ``prefix + "/"`` under ``root`` (nested like ``config``; empty when none does), e.g. ``data/demo/bert`` ->
    ``<root>/bert`` for ``prefix="data/demo"``.  What ``tempclr-report`` and the demo benchmark report use to point
    the configs of ``configs/`` at other folders."""
    prefix = prefix.rstrip("/")

    def walk(node: Any) -> Any:
        out = {}
        for key, value in node.items():
            if OmegaConf.is_dict(value):
                sub = walk(value)
                if sub:
                    out[str(key)] = sub
            elif isinstance(value, str) and (value == prefix or value.startswith(prefix + "/")):
                out[str(key)] = os.path.join(root, value[len(prefix):].lstrip("/")).rstrip("/")
        return out

    return OmegaConf.create(walk(config))
