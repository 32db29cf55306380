"""Small shared helpers: seeding, and (optional) distributed queries that also work in a single process
(:mod:`tempclr.utils.distributed`); config reading (:mod:`tempclr.utils.load_config`) re-exported under MMPT's
names."""
from __future__ import annotations

import random

import numpy as np
import torch

from .distributed import (  # noqa: F401
    broadcast_object, collective_device, get_local_rank, get_rank, get_world_size, print_on_rank0,
)
from .load_config import cfg_get, load_config, recursive_config  # noqa: F401

__all__ = ["set_seed", "get_world_size", "get_rank", "get_local_rank", "print_on_rank0", "collective_device",
           "broadcast_object",
           "cfg_get", "load_config", "recursive_config"]


def set_seed(seed: int = 43211) -> None:
    """Seed Python ``random``, numpy and torch (the aligners draw from Python ``random``)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
