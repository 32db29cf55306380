"""``ShardedTensor``: N variable-length arrays stored as one concatenated array plus row offsets.

On disk a shard with prefix ``p`` is two ``.npy`` files:

- ``p_data.npy``: the N arrays concatenated along axis 0, shape ``[sum(len_i), *row_shape]``;
- ``p_starts.npy``: int64 offsets ``[N + 1]`` with ``starts[0] == 0``, non-decreasing, ``starts[-1] == len(data)``.

Item ``i`` is ``data[starts[i]:starts[i + 1]]``.  ``load`` memory-maps the data file once per object (the original
re-opened both memmaps on every item), so an item is a view into one ``np.memmap`` and reading it touches only its
own rows.  Items are sliced from a plain-ndarray view of the memmap: slicing the ``np.memmap`` subclass itself costs
about 3 us more per item than the read (see BENCHMARKS.md, "ShardedTensor").  Video shards hold per-second
features ``[T, 512]`` float16; text shards hold ``[n_clips, 2]`` float32 start/end times or ``[n_clips, 32]`` int32
token ids.
"""
from __future__ import annotations

import operator
import os
import tempfile
from typing import Iterable, Optional, Sequence

import numpy as np

from .fileio import load_npy, no_space_error, save_npy_atomic, umask_mode

__all__ = ["ShardedTensor", "write_sharded", "shard_paths"]

_FIX_HINT = ("re-create the shard: scripts/shard_feature.py writes video shards, scripts/pretokenization.py "
             "writes caption shards")


def shard_paths(path_prefix: str) -> tuple[str, str]:
    """``(starts_path, data_path)`` for a shard prefix: ``<p>_starts.npy`` and ``<p>_data.npy``."""
    return f"{path_prefix}_starts.npy", f"{path_prefix}_data.npy"


def _check_starts(starts: np.ndarray, n_rows: int, source: str) -> np.ndarray:
    """Validate an offsets array against a data array of ``n_rows`` rows; return it as int64 ``[N + 1]``."""
    if starts.ndim != 1:
        raise ValueError(f"{source}: starts must be 1-D [N + 1], got shape {starts.shape}; {_FIX_HINT}")
    if not np.issubdtype(starts.dtype, np.integer):
        raise ValueError(f"{source}: starts must be integers, got dtype {starts.dtype}; {_FIX_HINT}")
    if len(starts) == 0:
        raise ValueError(f"{source}: starts is empty (it needs N + 1 >= 1 offsets, the first being 0); {_FIX_HINT}")
    if starts[0] != 0:
        raise ValueError(f"{source}: starts[0] must be 0, got {starts[0]}; {_FIX_HINT}")
    steps = np.diff(starts)
    if np.any(steps < 0):
        bad = int(np.argmax(steps < 0))
        raise ValueError(f"{source}: starts must be non-decreasing, but starts[{bad}]={starts[bad]} > "
                         f"starts[{bad + 1}]={starts[bad + 1]}; {_FIX_HINT}")
    if starts[-1] != n_rows:
        raise ValueError(f"{source}: starts[-1]={starts[-1]} does not equal the number of data rows {n_rows} "
                         f"(data and starts files are from different runs or truncated); {_FIX_HINT}")
    return starts.astype(np.int64, copy=False)


def write_sharded(path_prefix: str, lengths: Sequence[int], row_shape: tuple[int, ...], dtype: np.dtype,
                  arrays: Iterable[np.ndarray]) -> None:
    """Stream N arrays into a shard without holding them all in memory.

    ``lengths[i]`` is the number of rows of the i-th array, each array being ``[lengths[i], *row_shape]`` of
    ``dtype``; ``arrays`` yields them in order (e.g. a generator that loads one file at a time).  The data file is
    filled through a temp memmap and both files are moved into place with ``os.replace``.
    """
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lengths, dtype=np.int64), out=starts[1:])
    dtype = np.dtype(dtype)
    row_shape = tuple(int(d) for d in row_shape)
    starts_path, data_path = shard_paths(path_prefix)
    folder = os.path.dirname(data_path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp.", suffix=".npy")
    os.close(fd)
    try:
        shape = (int(starts[-1]),) + row_shape
        if starts[-1] > 0:
            data = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            # claim the blocks now: a full disk is an OSError here, not a SIGBUS when a page is written
            fd = os.open(tmp, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
            try:
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
            finally:
                os.close(fd)
        else:  # numpy cannot memory-map an empty array: an all-empty shard is built in memory instead
            data = np.empty(shape, dtype=dtype)
        count = 0
        for i, array in enumerate(arrays):
            if i >= len(lengths):
                raise ValueError(f"{path_prefix}: more arrays than the {len(lengths)} lengths given")
            expected = (int(lengths[i]),) + row_shape
            if array.shape != expected or array.dtype != dtype:
                raise ValueError(f"{path_prefix}: array {i} is {array.shape} {array.dtype}, declared "
                                 f"{expected} {dtype}")
            data[starts[i]:starts[i + 1]] = array
            count += 1
        if count != len(lengths):
            raise ValueError(f"{path_prefix}: got {count} arrays for {len(lengths)} lengths")
        if isinstance(data, np.memmap):
            data.flush()
            del data
        else:
            np.save(tmp, data, allow_pickle=False)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, data_path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError):
            raise no_space_error(error, data_path) from error
        raise
    save_npy_atomic(starts_path, starts)


class ShardedTensor:
    """N arrays ``[len_i, *row_shape]`` held as ``data [sum(len_i), *row_shape]`` and ``starts [N + 1]`` int64."""

    def __init__(self, data: np.ndarray, starts: np.ndarray) -> None:
        if data.ndim < 1:
            raise ValueError(f"ShardedTensor data must have at least 1 dimension, got shape {data.shape}")
        self._set(data, _check_starts(np.asarray(starts), len(data), "ShardedTensor(data, starts)"))
        self._source: Optional[tuple[str, str]] = None

    def _set(self, data: np.ndarray, starts: np.ndarray) -> None:
        self.data = data                               # the np.memmap itself when loaded with mmap_mode
        self.starts = starts                           # int64 [N + 1]
        self._rows = data.view(np.ndarray)             # same memory, without memmap's per-slice overhead
        self._offsets = starts.tolist()                # Python ints: faster to index than numpy scalars

    @classmethod
    def from_list(cls, arrays: Sequence[np.ndarray]) -> "ShardedTensor":
        """Concatenate arrays that share their dtype and trailing shape ``row_shape``."""
        if len(arrays) == 0:
            raise ValueError("ShardedTensor.from_list needs at least one array (row shape and dtype come from it)")
        first = np.asarray(arrays[0])
        for i, array in enumerate(arrays):
            if array.ndim < 1 or array.shape[1:] != first.shape[1:] or array.dtype != first.dtype:
                raise ValueError(f"ShardedTensor.from_list: array {i} is {array.shape} {array.dtype}, but array 0 "
                                 f"is {first.shape} {first.dtype}; all need the same dtype and trailing shape")
        starts = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum([len(a) for a in arrays], out=starts[1:])
        return cls(np.concatenate(arrays, axis=0), starts)

    def save(self, path_prefix: str) -> None:
        """Write ``<path_prefix>_starts.npy`` and ``<path_prefix>_data.npy`` (each atomically)."""
        starts_path, data_path = shard_paths(path_prefix)
        save_npy_atomic(data_path, np.ascontiguousarray(self.data))
        save_npy_atomic(starts_path, self.starts)

    @classmethod
    def load(cls, path_prefix: str, mmap_mode: Optional[str] = "r") -> "ShardedTensor":
        """Open a shard written by :meth:`save` or :func:`write_sharded`.

        With ``mmap_mode="r"`` (default) the data stays on disk as one read-only ``np.memmap``; ``None`` reads it
        into memory.  The offsets are always read into memory and validated against the data length.
        """
        starts_path, data_path = shard_paths(path_prefix)
        for path in (starts_path, data_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"shard file missing: {path}; {_FIX_HINT}")
        data = load_npy(data_path, mmap_mode=mmap_mode, fix=_FIX_HINT)
        if data.ndim < 1:
            raise ValueError(f"{data_path}: shard data must have at least 1 dimension, got shape {data.shape}; "
                             f"{_FIX_HINT}")
        starts = load_npy(starts_path, fix=_FIX_HINT)
        tensor = cls.__new__(cls)
        tensor._set(data, _check_starts(starts, len(data), starts_path))
        tensor._source = (os.path.abspath(path_prefix), mmap_mode) if mmap_mode is not None else None
        return tensor

    def __getstate__(self) -> dict:
        """A memory-mapped shard pickles as its path (DataLoader workers re-open it instead of copying it)."""
        if self._source is not None:
            return {"source": self._source}
        return {"data": self.data, "starts": self.starts}

    def __setstate__(self, state: dict) -> None:
        if "source" in state:
            path_prefix, mmap_mode = state["source"]
            self.__dict__.update(ShardedTensor.load(path_prefix, mmap_mode).__dict__)
        else:
            self._set(state["data"], state["starts"])
            self._source = None

    def __getitem__(self, index: int) -> np.ndarray:
        """Item ``index`` as a view ``[len_i, *row_shape]`` (into the memmap when loaded with ``mmap_mode``)."""
        i = operator.index(index)
        n = len(self._offsets) - 1
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"ShardedTensor index {index} out of range for {n} items")
        return self._rows[self._offsets[i]:self._offsets[i + 1]]

    def __len__(self) -> int:
        return len(self.starts) - 1

    def lengths(self) -> np.ndarray:
        """Rows per item, int64 ``[N]``."""
        return np.diff(self.starts)

    def __repr__(self) -> str:
        return (f"ShardedTensor(n={len(self)}, rows={len(self.data)}, row_shape={self.data.shape[1:]}, "
                f"dtype={self.data.dtype})")
