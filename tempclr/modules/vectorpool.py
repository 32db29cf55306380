"""Per-video embedding pools for retrieval-augmented batching.

A pool may be filled by several processes, each for its share of a dataset: every row carries the position of its
item in the dataset, and :meth:`VectorPool.gather` collects the rows of all ranks onto every rank, in dataset order,
with the repeated items a padding sampler (``DistributedSampler``) adds dropped.  After ``gather`` the pool is the
one a single process would have filled over the whole dataset.  The original's ``DistributedVectorPool`` /
``DistributedVideoVectorPool`` (which synchronised through per-rank files) are the same classes under those names.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch

from tempclr.utils import collective_device, get_world_size
from tempclr.utils.registry import register

# rows per all_gather call: at most 2**24 floats (64 MiB) per rank and call, whatever the pool's size
GATHER_FLOATS = 2 ** 24


class VectorPool:
    """Collects one float32 vector per id, in insertion order; ``indices`` holds each row's dataset position."""

    def __init__(self, config=None):
        self.config = config
        self.ids: List[str] = []
        self.vectors: List[np.ndarray] = []
        self.indices: List[int] = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids: Sequence[str], vectors: np.ndarray, indices: Optional[Sequence[int]] = None) -> None:
        """``vectors [len(ids), D]``.  ``indices``: the items' positions in the dataset (default: the next
        positions after the rows already added, right for one process that walks the dataset in order)."""
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if indices is None:
            indices = range(len(self.ids), len(self.ids) + len(ids))
        if len(indices) != len(ids):
            raise ValueError(f"{len(indices)} dataset indices for {len(ids)} ids")
        self.ids.extend(ids)
        self.vectors.extend(np.asarray(vectors, dtype=np.float32))
        self.indices.extend(int(i) for i in indices)

    def matrix(self) -> np.ndarray:
        """``[N, D]`` float32, row i the vector of ``ids[i]``."""
        return np.stack(self.vectors).astype(np.float32, copy=False)

    def gather(self, num_items: int, device: Optional[torch.device] = None) -> "VectorPool":
        """Replace this rank's rows by every rank's rows (all ranks of the default process group call this),
        ordered by dataset index, one row per index: the first row of an index repeated by a padding sampler is
        kept (a repeat must carry the same id).  Every index ``0 .. num_items - 1`` must be present.  Vectors
        travel as ``[rows, D]`` float32 tensors on ``device`` (default :func:`~tempclr.utils.collective_device`:
        the rank's CUDA device under NCCL, the CPU otherwise), ids as Python objects.  Returns ``self``."""
        ids, vectors, indices = list(self.ids), self._local_matrix(), np.asarray(self.indices, dtype=np.int64)
        if get_world_size() > 1:
            ids, vectors, indices = _all_gather_rows(ids, vectors, indices,
                                                     device if device is not None else collective_device())
        order = np.argsort(indices, kind="stable")
        repeats = np.flatnonzero(indices[order][1:] == indices[order][:-1]) + 1  # positions in `order`
        for position in repeats:
            later, earlier = order[position], order[position - 1]
            if ids[later] != ids[earlier]:
                raise ValueError(f"dataset index {indices[later]} was embedded as {ids[earlier]!r} and as "
                                 f"{ids[later]!r}: the ranks do not read the same dataset")
        kept = np.delete(order, repeats)
        expected = np.arange(num_items)
        if not np.array_equal(indices[kept], expected):
            missing = np.setdiff1d(expected, indices[kept])
            extra = np.setdiff1d(indices[kept], expected)
            raise ValueError(f"the gathered pool should hold dataset indices 0..{num_items - 1} once each: "
                             f"{len(missing)} missing (first {missing[:1].tolist()}), {len(extra)} outside "
                             f"(first {extra[:1].tolist()}); every item must be embedded by some rank")
        self.ids = [ids[i] for i in kept]
        self.vectors = list(vectors[kept])
        self.indices = expected.tolist()
        return self

    def _local_matrix(self) -> np.ndarray:
        if self.vectors:
            return self.matrix()
        return np.zeros((0, 0), dtype=np.float32)


def _all_gather_rows(ids: List[str], vectors: np.ndarray, indices: np.ndarray, device: torch.device):
    """Every rank's ``ids``, ``vectors [n_r, D]`` and ``indices [n_r]``, concatenated in rank order.  Ranks may
    hold different numbers of rows (none, too): each pads to the largest count for the tensor collectives."""
    dist = torch.distributed
    world_size = dist.get_world_size()
    shape = torch.tensor([len(indices), vectors.shape[1] if len(indices) else 0], dtype=torch.int64, device=device)
    shapes = [torch.empty_like(shape) for _ in range(world_size)]
    dist.all_gather(shapes, shape)
    counts = [int(s[0]) for s in shapes]
    dims = {int(s[1]) for s, n in zip(shapes, counts) if n}
    if len(dims) > 1:
        raise ValueError(f"the ranks' pools hold vectors of different sizes {sorted(dims)}")
    dim = dims.pop() if dims else 0
    rows = max(counts)
    local = torch.zeros(rows, dim, dtype=torch.float32, device=device)
    local_index = torch.full((rows,), -1, dtype=torch.int64, device=device)
    if len(indices):
        local[: len(indices)] = torch.from_numpy(vectors).to(device)
        local_index[: len(indices)] = torch.from_numpy(indices).to(device)
    index_parts = [torch.empty_like(local_index) for _ in range(world_size)]
    dist.all_gather(index_parts, local_index)
    step = max(1, GATHER_FLOATS // max(dim, 1))
    chunks: List[List[np.ndarray]] = [[] for _ in range(world_size)]
    for start in range(0, rows, step):
        block = local[start: start + step].contiguous()
        parts = [torch.empty_like(block) for _ in range(world_size)]
        dist.all_gather(parts, block)
        for rank, part in enumerate(parts):
            chunks[rank].append(part.cpu().numpy())
    id_parts: List[Optional[List[str]]] = [None] * world_size
    dist.all_gather_object(id_parts, ids)
    all_ids: List[str] = []
    all_vectors, all_indices = [], []
    for rank in range(world_size):
        n = counts[rank]
        all_ids.extend(id_parts[rank])
        rank_vectors = np.concatenate(chunks[rank]) if chunks[rank] else np.zeros((0, dim), np.float32)
        all_vectors.append(rank_vectors[:n])
        all_indices.append(index_parts[rank][:n].cpu().numpy())
    return all_ids, np.concatenate(all_vectors), np.concatenate(all_indices)


@register("vectorpool")
class VideoVectorPool(VectorPool):
    """One vector per video: the mean over its clips of ``(pooled_video + pooled_text) / 2``."""

    def add_clips(self, video_ids: Sequence[str], pooled_video: torch.Tensor, pooled_text: torch.Tensor,
                  indices: Optional[Sequence[int]] = None) -> None:
        """``pooled_video``, ``pooled_text``: ``[num_videos, clips_per_video, D]``; ``indices``: the videos'
        dataset positions (see :meth:`VectorPool.add`)."""
        per_video = ((pooled_video.float() + pooled_text.float()) / 2).mean(dim=1)
        self.add(list(video_ids), per_video.detach().cpu().numpy(), indices)


@register("vectorpool")
class DistributedVideoVectorPool(VideoVectorPool):
    """The original's name for the multi-process video pool; every pool here gathers across ranks
    (:meth:`VectorPool.gather`), so this is :class:`VideoVectorPool` under that name."""


class DistributedVectorPool(VectorPool):
    """The original's name for the multi-process base pool (not nameable in configs, as the base class)."""
