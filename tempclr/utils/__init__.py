"""Small shared helpers: seeding and (optional) distributed queries that also work in a single process."""
from __future__ import annotations

import random

import numpy as np
import torch

from .load_config import cfg_get, load_config, recursive_config  # noqa: F401

__all__ = ["set_seed", "get_world_size", "get_rank", "get_local_rank", "print_on_rank0",
           "cfg_get", "load_config", "recursive_config"]


def set_seed(seed: int = 43211) -> None:
    """Seed Python ``random``, numpy and torch (the aligners draw from Python ``random``)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def get_world_size() -> int:
    """Number of processes in the default group; 1 when no process group is initialised."""
    return torch.distributed.get_world_size() if _distributed() else 1


def get_rank() -> int:
    """Rank in the default group; 0 when no process group is initialised."""
    return torch.distributed.get_rank() if _distributed() else 0


def get_local_rank() -> int:
    return get_rank()


def print_on_rank0(*args) -> None:
    if get_rank() == 0:
        print(*args, flush=True)
