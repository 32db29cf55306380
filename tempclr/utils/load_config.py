"""Config loading: OmegaConf YAML with ``includes`` stacking, and one helper for optional keys.

The original code relied on OmegaConf < 2.1, where reading a missing key gave ``None``; fairseq-fixed pins
OmegaConf 2.3, which raises instead.  Every optional read in tempclr therefore goes through :func:`cfg_get`.
"""
from __future__ import annotations

import os
import re
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from .fileio import write_text_atomic
from .save_dir_lock import save_dir_locked

__all__ = ["cfg_get", "recursive_config", "load_config", "next_run_dir", "save_config_atomic"]


def cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    """Read dotted ``key`` (e.g. ``"dataset.use_fast"``) from ``cfg``; a missing key or a null value gives
    ``default``.  Works on DictConfig, plain dicts and attribute objects (argparse.Namespace)."""
    node = cfg
    for part in key.split("."):
        if node is None:
            return default
        if isinstance(node, DictConfig):
            node = node.get(part, None) if part in node else None
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            node = getattr(node, part, None)
    return default if node is None else node


def recursive_config(config_path: str) -> DictConfig:
    """Load a YAML config; if it has ``includes: <path>``, load that base first (recursively, any depth) and
    merge this file over it (child keys win, dicts merge deeply)."""
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"config file not found: {config_path}")
    config = OmegaConf.load(config_path)
    if config is None:
        raise ValueError(f"config file is empty: {config_path}")
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


def _rank() -> int:
    from . import get_rank  # tempclr.utils imports this module

    return get_rank()


def save_config_atomic(config: DictConfig, path: str) -> None:
    """Write ``config`` as YAML to ``path`` through a temp file in the same folder."""
    write_text_atomic(path, OmegaConf.to_yaml(config))


def load_config(args: Any = None, config_file: Optional[str] = None, dryrun: bool = False) -> DictConfig:
    """Load a run config.

    ``config_file`` or ``args.taskconfig`` names the YAML.  ``dataset.subsampling`` divides the fairseq batch
    size.  For a training config (``dataset.split != "test"``) this requires ``fairseq.checkpoint.save_dir``;
    it points ``fairseq.common.tensorboard_logdir`` at the next free ``<save_dir>/<logdir>_<k>`` and, unless
    ``dryrun`` or on a rank other than 0, creates ``save_dir`` and saves the merged config to
    ``<save_dir>/config.yaml`` while holding ``save_dir``'s lock (:mod:`tempclr.utils.save_dir_lock`): when another
    run holds it, this raises ``SaveDirInUseError`` before writing.  With ``dryrun`` the
    run directory that would be used is still filled in, but nothing is created or written.
    """
    if config_file is None:
        config_file = cfg_get(args, "taskconfig")
    if config_file is None:
        raise ValueError("load_config needs a config file (positional 'taskconfig' argument)")
    config = recursive_config(config_file)
    from .config_schema import validate_config  # the alignment keys come from tempclr.tasks: import late

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
        if not dryrun and _rank() == 0:  # the other ranks of a run leave save_dir to rank 0
            os.makedirs(save_dir, exist_ok=True)
            # a run that holds save_dir's lock (another training) makes this fail before anything is written
            with save_dir_locked(str(save_dir)):
                save_config_atomic(config, os.path.join(save_dir, "config.yaml"))
    return config
