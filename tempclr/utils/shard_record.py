"""The record ``tempclr-shard-features`` keeps of what it put in each video shard, to check shards against later.

Beside ``{split}_meta.pkl`` (``{k: [video_id, ...]}``, the original's layout, left unchanged so that code written
for it still reads it) the sharding writes ``{split}_meta_record.npz``, one entry per video in meta order:

- ``ids`` (str ``[N]``), ``shard`` / ``index`` (int64 ``[N]``): where the video was put;
- ``lengths`` (int64 ``[N]``): its number of feature rows (seconds);
- ``first`` / ``last`` (uint32 ``[N]``): CRC-32 of the bytes of its first and last feature row.

A shard whose offsets were shifted, whose meta ids were reordered or that was rebuilt from other features no
longer matches the record; reading two rows per video makes the check cheap enough to run before every training.
"""
from __future__ import annotations

import os
import zlib
from typing import Optional

import numpy as np

from .fileio import atomic_path, open_temp

__all__ = ["RECORD_FIELDS", "record_path", "row_checksums", "write_record", "read_record"]

RECORD_FIELDS = ("ids", "shard", "index", "lengths", "first", "last")
_CHUNK_ROWS = 4096


def record_path(shard_dir: str, split: str) -> str:
    """``<shard_dir>/<split>_meta_record.npz``."""
    return os.path.join(shard_dir, f"{split}_meta_record.npz")


def row_checksums(data: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """CRC-32 of the bytes of ``data[r]`` for each ``r`` in ``rows``, uint32 ``[len(rows)]``; ``data`` is
    ``[R, *row_shape]`` (a memmap is read only at those rows)."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.zeros(len(rows), dtype=np.uint32)
    view = data.view(np.ndarray) if isinstance(data, np.memmap) else data
    for begin in range(0, len(rows), _CHUNK_ROWS):
        block = np.ascontiguousarray(view[rows[begin:begin + _CHUNK_ROWS]])
        for j in range(len(block)):
            out[begin + j] = zlib.crc32(block[j].tobytes())
    return out


def write_record(path: str, ids: list[str], shard: np.ndarray, index: np.ndarray, lengths: np.ndarray,
                 first: np.ndarray, last: np.ndarray) -> None:
    """Write the record (see the module docstring) atomically, without pickles."""
    with atomic_path(path, suffix=".npz") as tmp, open_temp(tmp) as f:
        np.savez(f, ids=np.asarray(ids, dtype=str), shard=np.asarray(shard, np.int64),
                 index=np.asarray(index, np.int64), lengths=np.asarray(lengths, np.int64),
                 first=np.asarray(first, np.uint32), last=np.asarray(last, np.uint32))


def read_record(path: str) -> Optional[dict[str, np.ndarray]]:
    """The record at ``path`` as ``{field: array}``, or None when there is none (a shard set written before
    records were kept, or by other tools).  A record that cannot be read or lacks a field is a ``ValueError``
    naming the file."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            record = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path}: not a readable shard record ({error}); re-run tempclr-shard-features") from None
    missing = [name for name in RECORD_FIELDS if name not in record]
    sizes = {len(record[name]) for name in RECORD_FIELDS if name in record}
    if missing or len(sizes) != 1:
        raise ValueError(f"{path}: the shard record lacks {missing} or its fields differ in length; "
                         "re-run tempclr-shard-features")
    return record
