"""Batch collation for dicts of numpy arrays / tensors / numbers / strings."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np
import torch


def collate_values(values: Sequence[Any]) -> Any:
    """Stack arrays and tensors along a new dim 0; ints/bools → int64/bool tensor, floats → float tensor;
    dicts collate per key; anything else (strings, tuples of ids) stays a list."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(list(values))
    if isinstance(first, np.ndarray):
        return torch.from_numpy(np.stack(values))
    if isinstance(first, (bool, np.bool_)):
        return torch.tensor([bool(v) for v in values])
    if isinstance(first, (int, np.integer)):
        return torch.tensor([int(v) for v in values], dtype=torch.int64)
    if isinstance(first, (float, np.floating)):
        return torch.tensor([float(v) for v in values])
    if isinstance(first, dict):
        return collate_dicts(values)
    return list(values)


def collate_dicts(samples: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Collate a list of same-keyed dicts key by key (see :func:`collate_values`)."""
    if len(samples) == 0:
        return {}
    batch = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        try:
            batch[key] = collate_values(values)
        except (ValueError, RuntimeError) as error:
            shapes = sorted({tuple(np.shape(v)) for v in values})
            raise ValueError(f"cannot batch key {key!r}: the items have shapes {shapes} ({error}); items of "
                             "different sizes (one video per item) need fairseq.dataset.batch_size: 1") from error
    return batch


def stack_clip_dicts(clips: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack per-clip dicts into one per-video dict of ``[C, ...]`` numpy arrays (ints become int64)."""
    out: Dict[str, Any] = {}
    for key in clips[0]:
        values = [c[key] for c in clips]
        out[key] = np.stack(values) if isinstance(values[0], np.ndarray) else np.asarray(values, dtype=np.int64)
    return out
