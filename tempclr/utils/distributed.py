"""Queries of the default process group that also work in a single process (no group initialised)."""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["get_world_size", "get_rank", "get_local_rank", "print_on_rank0", "collective_device",
           "broadcast_object"]


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def get_world_size() -> int:
    """Number of processes in the default group; 1 when no process group is initialised."""
    return torch.distributed.get_world_size() if _distributed() else 1


def get_rank() -> int:
    """Rank in the default group; 0 when no process group is initialised."""
    return torch.distributed.get_rank() if _distributed() else 0


def get_local_rank() -> int:
    """MMPT's name, kept for code written against it: like MMPT's, it returns the rank in the *default group*
    (:func:`get_rank`), not the rank on this node.  New code calls :func:`get_rank`."""
    return get_rank()


def print_on_rank0(*args: Any) -> None:
    """MMPT's name, kept for code written against it: ``print`` on rank 0 only."""
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
