"""Sliding windows over a video's seconds, shared by the windowed aligners and predictors (CrossTask, YouCook2
full video, COIN): :func:`sliding_windows`, :func:`window_config` and the per-dataset defaults, and
:func:`check_features`.
"""
from __future__ import annotations

import os
from typing import Any, Tuple

import numpy as np

from tempclr.utils.config_schema import cfg_get

__all__ = ["sliding_windows", "window_config", "check_features", "CROSSTASK_WINDOW", "YOUCOOK_WINDOW"]


def sliding_windows(video_len: int, stride: int = 16, size: int = 32) -> Tuple[np.ndarray, np.ndarray]:
    """Window starts and lengths of the CrossTask aligner.

    For ``ws = 0, stride, 2*stride, ...``: ``length = min(video_len - ws, size)``; the loop stops after the first
    window with ``video_len - ws <= size`` (the window reaching the end).  Returns int64 ``starts [W]`` and
    ``lengths [W]``; ``sum(lengths)`` is the number of rows of the model's ``logits [Σlen, K]``.
    """
    if video_len < 1:
        raise ValueError(f"sliding_windows: the video has {video_len} seconds; it needs at least one")
    if stride < 1 or size < 1:
        raise ValueError(f"sliding_windows: sliding_window={stride} and sliding_window_size={size} must be >= 1")
    starts, lengths = [], []
    for start in range(0, video_len, stride):
        starts.append(start)
        lengths.append(min(video_len - start, size))
        if video_len - start <= size:
            break
    return np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)


# (dataset.sliding_window, dataset.sliding_window_size) when the config omits them: the original's defaults differ
# by dataset, so they live here rather than in the config schema
CROSSTASK_WINDOW = (16, 32)
YOUCOOK_WINDOW = (16, 16)


def window_config(config: Any, max_video_len: int, defaults: Tuple[int, int]) -> Tuple[int, int]:
    """``(dataset.sliding_window, dataset.sliding_window_size)`` read from the ``dataset:`` section ``config``,
    ``defaults`` (:data:`CROSSTASK_WINDOW` or :data:`YOUCOOK_WINDOW`) for those it omits; a window longer than
    ``max_video_len`` is an error (``_build_video_seq`` would cut it silently)."""
    stride = int(cfg_get(config, "sliding_window", defaults[0]))
    size = int(cfg_get(config, "sliding_window_size", defaults[1]))
    if size > max_video_len:
        raise ValueError(f"dataset.sliding_window_size={size} exceeds dataset.max_video_len={max_video_len}: "
                         "windows would be cut silently")
    return stride, size


def check_features(feature: np.ndarray, vfeat_dir: str, video_id: str) -> np.ndarray:
    """``feature`` if it is ``[T, D]`` with ``T >= 1``, else a ``ValueError`` naming ``<vfeat_dir>/<id>.npy``."""
    if feature.ndim != 2 or feature.shape[0] < 1:
        raise ValueError(f"{os.path.join(vfeat_dir, video_id + '.npy')}: expected features [T, D] with T >= 1, "
                         f"got shape {feature.shape}")
    return feature
