"""Pack per-video feature files into ShardedTensor shards for pretraining.

Input: ``<feat_dir>/<video_id>.npy`` (``[T, D]``, e.g. S3D float16 ``[T, 512]``) and split lists with one video id
per line (``how2_s3d_train.lst``, ``how2_s3d_val.lst``).  Output in ``shard_dir``, for each split:

- ``{split}_<k>_starts.npy`` / ``{split}_<k>_data.npy``: shard ``k`` holds list entries ``k*shard_size`` to
  ``(k+1)*shard_size - 1`` in list order;
- ``{split}_meta.pkl``: ``{k: [video_id, ...]}``, the position in the list being the index within the shard;
- ``{split}_meta_record.npz``: per video its rows and a checksum of its first and last row
  (:mod:`tempclr.utils.shard_record`), which ``tempclr-check`` and training check the shards against.

Every feature file of both splits is checked (exists, a whole ``.npy`` file, 2-D with at least one row, same
feature size and dtype) before anything is written, and the output folder is checked to be writable.  The new
shard set is written into a staging folder beside ``shard_dir`` and only then moved into place, replacing the
earlier set's files as a whole, so a run that fails leaves an earlier set as it was.  Memory stays bounded by
one feature file: each shard's data file is a memmap of the total rows read from the headers, filled one file
at a time.  Usage::

    tempclr-shard-features --feat-dir data/feat/feat_how2_s3d \\
        --train-list data/how2/how2_s3d_train.lst --val-list data/how2/how2_s3d_val.lst \\
        --shard-dir data/feat/feat_how2_s3d_shard [--shard-size 4096]
"""
from __future__ import annotations

import os
import re

import numpy as np

from tempclr.utils.fileio import check_name, check_output_dir, load_npy, npy_header, staged_output_set, \
    write_pickle_atomic
from tempclr.utils.shard_record import record_path, row_checksums, write_record
from tempclr.utils.shardedtensor import write_sharded

__all__ = ["read_video_list", "shard_split", "shard_features", "is_video_shard_file"]

SPLITS = ("train", "val")
_SHARD_FILE = re.compile(r"^(train|val)_(\d+_(starts|data)\.npy|meta\.pkl|meta_record\.npz)$")
SHOWN = 5  # how many faulty files an input error lists


def is_video_shard_file(name: str) -> bool:
    """Whether ``name`` is a file of the video shard set (``{train,val}_<k>_{starts,data}.npy``,
    ``{train,val}_meta.pkl``, ``{train,val}_meta_record.npz``), the set a new run replaces as a whole."""
    return _SHARD_FILE.match(name) is not None


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


def _listed(problems: list[str]) -> str:
    return "; ".join(problems[:SHOWN]) + (f"; ... ({len(problems) - SHOWN} more)" if len(problems) > SHOWN else "")


def _feature_headers(feat_dir: str, video_ids: list[str], list_path: str) -> tuple[list[tuple[int, ...]], np.dtype]:
    """Shapes of all feature files and their common dtype, checking that the files exist, are whole, are 2-D with
    at least one row and agree on feature size and dtype; every faulty file is listed in one error."""
    missing = [v for v in video_ids if not os.path.isfile(os.path.join(feat_dir, f"{v}.npy"))]
    if missing:
        shown = ", ".join(os.path.join(feat_dir, f"{v}.npy") for v in missing[:SHOWN])
        raise FileNotFoundError(f"{len(missing)} video(s) listed in {list_path} have no feature file: {shown}"
                                f"{' ...' if len(missing) > SHOWN else ''}; extract their features or remove them "
                                "from the list")
    shapes, problems, first = [], [], None
    for video_id in video_ids:
        path = os.path.join(feat_dir, f"{video_id}.npy")
        try:
            shape, dtype = npy_header(path)
        except ValueError as error:
            problems.append(str(error))
            shapes.append(None)
            continue
        if len(shape) != 2 or shape[0] < 1:
            problems.append(f"{path}: features must be [T, D] with T >= 1, got shape {shape}")
        elif first is None:
            first = (path, shape[1], dtype)
        elif (shape[1], dtype) != first[1:]:
            problems.append(f"{path}: features are [T, {shape[1]}] {dtype}, but {first[0]} is "
                            f"[T, {first[1]}] {first[2]}; all videos need the same feature size and dtype")
        shapes.append(shape)
    if problems:
        raise ValueError(f"{len(problems)} feature file(s) of {list_path} cannot be sharded: {_listed(problems)}; "
                         "re-extract those videos (tempclr-extract) or remove them from the list; nothing was "
                         "written")
    return shapes, first[2]


def _check_split(feat_dir: str, list_path: str) -> tuple[list[str], list[tuple[int, ...]], np.dtype]:
    video_ids = read_video_list(list_path)
    shapes, dtype = _feature_headers(feat_dir, video_ids, list_path)
    return video_ids, shapes, dtype


def _write_split(feat_dir: str, video_ids: list[str], shapes: list[tuple[int, ...]], dtype: np.dtype,
                 out_dir: str, split: str, shard_size: int) -> dict[int, list[str]]:
    """Write the shards, meta and record of one checked split into ``out_dir``."""
    row_shape = shapes[0][1:]
    meta: dict[int, list[str]] = {}
    lengths = np.array([s[0] for s in shapes], dtype=np.int64)
    first_sums = np.zeros(len(video_ids), np.uint32)
    last_sums = np.zeros(len(video_ids), np.uint32)
    shard_of = np.zeros(len(video_ids), np.int64)
    index_of = np.zeros(len(video_ids), np.int64)

    def arrays(begin: int, ids: list[str]):
        for offset, video_id in enumerate(ids):
            path = os.path.join(feat_dir, f"{video_id}.npy")
            array = load_npy(path, mmap_mode="r")
            ends = row_checksums(array, np.array([0, len(array) - 1]))
            first_sums[begin + offset], last_sums[begin + offset] = ends
            yield np.asarray(array)
            del array

    for k, begin in enumerate(range(0, len(video_ids), shard_size)):
        ids = video_ids[begin:begin + shard_size]
        write_sharded(os.path.join(out_dir, f"{split}_{k}"), lengths[begin:begin + shard_size].tolist(),
                      row_shape, dtype, arrays(begin, ids))
        shard_of[begin:begin + len(ids)] = k
        index_of[begin:begin + len(ids)] = np.arange(len(ids))
        meta[k] = ids
    write_pickle_atomic(os.path.join(out_dir, f"{split}_meta.pkl"), meta)
    write_record(record_path(out_dir, split), video_ids, shard_of, index_of, lengths, first_sums, last_sums)
    return meta


def shard_split(feat_dir: str, list_path: str, shard_dir: str, split: str,
                shard_size: int = 4096) -> dict[int, list[str]]:
    """Shard one split; returns (and writes as ``{split}_meta.pkl``) ``{k: [video_id, ...]}``.  The split's
    earlier files in ``shard_dir`` are replaced as a whole (see the module docstring)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    check_output_dir(shard_dir, "--shard-dir")
    checked = _check_split(feat_dir, list_path)
    with staged_output_set(shard_dir, lambda name: is_video_shard_file(name) and name.startswith(f"{split}_")) \
            as staging:
        return _write_split(feat_dir, *checked, staging, split, shard_size)


def shard_features(feat_dir: str, train_list: str, val_list: str, shard_dir: str,
                   shard_size: int = 4096) -> dict[str, dict[int, list[str]]]:
    """Shard the train and val splits; returns ``{"train": meta, "val": meta}``.  Both splits are checked before
    anything is written, and the earlier shard set of ``shard_dir`` is replaced as a whole."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if not os.path.isdir(feat_dir):
        raise FileNotFoundError(f"feature folder not found: {feat_dir}")
    check_output_dir(shard_dir, "--shard-dir")
    checked = {split: _check_split(feat_dir, list_path) for split, list_path in zip(SPLITS, (train_list, val_list))}
    with staged_output_set(shard_dir, is_video_shard_file) as staging:
        return {split: _write_split(feat_dir, *checked[split], staging, split, shard_size) for split in SPLITS}
