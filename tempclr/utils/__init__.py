"""Small shared helpers: seeding and (optional) distributed queries that also work in a single process."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from .load_config import cfg_get, load_config, recursive_config  # noqa: F401

__all__ = ["set_seed", "get_world_size", "get_rank", "get_local_rank", "print_on_rank0", "collective_device",
           "broadcast_object",
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


def collective_device() -> torch.device:
    """Where tensors for the default group's collectives must live: the rank's current CUDA device under NCCL
    (fairseq sets it to the rank's GPU), the CPU otherwise (gloo, or no process group)."""
    if _distributed() and torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (a picklable object; every rank of the default group calls this,
    the others' ``obj`` is ignored).  In one process: ``obj``."""
    if not _distributed() or torch.distributed.get_world_size() == 1:
        return obj
    holder = [obj if torch.distributed.get_rank() == src else None]
    torch.distributed.broadcast_object_list(holder, src=src, device=collective_device())
    return holder[0]
