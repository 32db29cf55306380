"""Pack per-video feature files into ShardedTensor shards for pretraining.

Input: ``<feat_dir>/<video_id>.npy`` (``[T, D]``, e.g. S3D float16 ``[T, 512]``) and split lists with one video id
per line (``how2_s3d_train.lst``, ``how2_s3d_val.lst``).  Output in ``shard_dir``, for each split:

- ``{split}_<k>_starts.npy`` / ``{split}_<k>_data.npy``: shard ``k`` holds list entries ``k*shard_size`` to
  ``(k+1)*shard_size - 1`` in list order;
- ``{split}_meta.pkl``: ``{k: [video_id, ...]}``, the position in the list being the index within the shard.

Every feature file is checked (exists, 2-D, same feature size and dtype) before any shard is written.  Usage::

    tempclr-shard-features --feat-dir data/feat/feat_how2_s3d \\
        --train-list data/how2/how2_s3d_train.lst --val-list data/how2/how2_s3d_val.lst \\
        --shard-dir data/feat/feat_how2_s3d_shard [--shard-size 4096]
"""
from __future__ import annotations

import os

import numpy as np

from tempclr.utils.fileio import check_name, write_pickle_atomic
from tempclr.utils.shardedtensor import write_sharded

__all__ = ["read_video_list", "shard_split", "shard_features"]


def read_video_list(list_path: str) -> list[str]:
    """Video ids of a split list (one per line, blank lines ignored); duplicates and an empty list are errors."""
    if not os.path.isfile(list_path):
        raise FileNotFoundError(f"video list not found: {list_path}")
    with open(list_path, encoding="utf-8") as f:
        # each id names <feat_dir>/<id>.npy: it must stay inside feat_dir
        ids = [check_name(line.strip(), list_path, line_no, "video id")
               for line_no, line in enumerate(f, 1) if line.strip()]
    if not ids:
        raise ValueError(f"{list_path}: the list holds no video ids (one id per line expected)")
    seen: set[str] = set()
    for line_no, video_id in enumerate(ids, 1):
        if video_id in seen:
            raise ValueError(f"{list_path}: video id {video_id!r} is listed twice (entry {line_no}); "
                             "each video may appear once per split")
        seen.add(video_id)
    return ids


def _feature_headers(feat_dir: str, video_ids: list[str], list_path: str) -> tuple[list[tuple[int, ...]], np.dtype]:
    """Shapes of all feature files and their common dtype, checking that the files exist, are 2-D and agree
    on feature size and dtype."""
    missing = [v for v in video_ids if not os.path.isfile(os.path.join(feat_dir, f"{v}.npy"))]
    if missing:
        shown = ", ".join(os.path.join(feat_dir, f"{v}.npy") for v in missing[:5])
        raise FileNotFoundError(f"{len(missing)} video(s) listed in {list_path} have no feature file: {shown}"
                                f"{' ...' if len(missing) > 5 else ''}; extract their features or remove them "
                                "from the list")
    shapes, first = [], None
    for video_id in video_ids:
        path = os.path.join(feat_dir, f"{video_id}.npy")
        header = np.load(path, mmap_mode="r")
        if header.ndim != 2:
            raise ValueError(f"{path}: features must be 2-D [T, D], got shape {header.shape}")
        if first is None:
            first = (path, header.shape[1], header.dtype)
        elif (header.shape[1], header.dtype) != first[1:]:
            raise ValueError(f"{path}: features are [T, {header.shape[1]}] {header.dtype}, but {first[0]} is "
                             f"[T, {first[1]}] {first[2]}; all videos need the same feature size and dtype")
        shapes.append(header.shape)
        del header
    return shapes, first[2]


def shard_split(feat_dir: str, list_path: str, shard_dir: str, split: str,
                shard_size: int = 4096) -> dict[int, list[str]]:
    """Shard one split; returns (and writes as ``{split}_meta.pkl``) ``{k: [video_id, ...]}``."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    video_ids = read_video_list(list_path)
    shapes, dtype = _feature_headers(feat_dir, video_ids, list_path)
    row_shape = shapes[0][1:]
    os.makedirs(shard_dir, exist_ok=True)
    meta: dict[int, list[str]] = {}
    for k, first in enumerate(range(0, len(video_ids), shard_size)):
        ids = video_ids[first:first + shard_size]
        arrays = (np.load(os.path.join(feat_dir, f"{v}.npy")) for v in ids)
        write_sharded(os.path.join(shard_dir, f"{split}_{k}"), [s[0] for s in shapes[first:first + shard_size]],
                      row_shape, dtype, arrays)
        meta[k] = ids
    write_pickle_atomic(os.path.join(shard_dir, f"{split}_meta.pkl"), meta)
    return meta


def shard_features(feat_dir: str, train_list: str, val_list: str, shard_dir: str,
                   shard_size: int = 4096) -> dict[str, dict[int, list[str]]]:
    """Shard the train and val splits; returns ``{"train": meta, "val": meta}``."""
    if not os.path.isdir(feat_dir):
        raise FileNotFoundError(f"feature folder not found: {feat_dir}")
    return {split: shard_split(feat_dir, list_path, shard_dir, split, shard_size)
            for split, list_path in (("train", train_list), ("val", val_list))}
