"""Per-video embedding pools for retrieval-augmented batching."""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import torch

from tempclr.utils.registry import register


class VectorPool:
    """Collects one float32 vector per id, in insertion order."""

    def __init__(self, config=None):
        self.config = config
        self.ids: List[str] = []
        self.vectors: List[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        self.ids.extend(ids)
        self.vectors.extend(np.asarray(vectors, dtype=np.float32))

    def matrix(self) -> np.ndarray:
        """``[N, D]`` float32, row i the vector of ``ids[i]``."""
        return np.stack(self.vectors).astype(np.float32, copy=False)

    def as_dict(self) -> Dict[str, np.ndarray]:
        return dict(zip(self.ids, self.vectors))


@register("vectorpool")
class VideoVectorPool(VectorPool):
    """One vector per video: the mean over its clips of ``(pooled_video + pooled_text) / 2``."""

    def add_clips(self, video_ids: Sequence[str], pooled_video: torch.Tensor, pooled_text: torch.Tensor) -> None:
        """``pooled_video``, ``pooled_text``: ``[num_videos, clips_per_video, D]``."""
        per_video = ((pooled_video.float() + pooled_text.float()) / 2).mean(dim=1)
        self.add(list(video_ids), per_video.detach().cpu().numpy())
