"""Every checkpoint file fairseq-train writes for tempclr appears only complete.

fairseq writes the first checkpoint of a save (``checkpointN.pt``, ``checkpoint_N_M.pt`` or ``checkpoint_best.pt``)
through ``<name>.tmp`` and a rename, but without ``fsync``, and then copies it to the others (``checkpoint_best.pt``,
``checkpoint.best_*.pt``, ``checkpoint_last.pt``) with ``PathManager.copy``, i.e. ``shutil.copyfile``, which
truncates the destination and then fills it: a run killed during the copy leaves a short ``checkpoint_best.pt``
or ``checkpoint_last.pt`` under its final name.

:func:`install_atomic_checkpoint_writes` (run when fairseq imports the plugin) changes exactly two names inside
``fairseq.checkpoint_utils``, where ``save_checkpoint`` looks them up at call time:

- ``torch_persistent_save`` (the trainer's only way to write a checkpoint): ``torch.save`` into a temp file beside
  the target, ``fsync``, ``os.replace``, ``fsync`` of the folder (:func:`tempclr.utils.fileio.atomic_path`);
- ``PathManager``: fairseq's class with ``copy`` replaced by :func:`tempclr.utils.fileio.copy_file_atomic` (temp
  file, ``fsync``, ``os.replace``); every other ``PathManager`` method is fairseq's.

Asynchronous checkpoint writes (``write_checkpoints_asynchronously``) and paths that need ioPath (remote stores)
keep fairseq's own code: a rename is not atomic there.  fairseq retries a failed ``torch.save`` into the same open
file, which appends to what the failed attempt wrote; the atomic writer does not retry: the error stops the run,
and the previous checkpoint stays as it was.  A crash leaves at most a temp file (``.checkpoint2.pt.<random>.tmp``),
which the next run removes (:func:`tempclr.utils.checkpoint.prepare_save_dir`).
"""
from __future__ import annotations

import os

import fairseq.checkpoint_utils as checkpoint_utils
import torch
from fairseq.file_io import PathManager

from tempclr.utils.fileio import atomic_path, copy_file_atomic, open_temp

__all__ = ["install_atomic_checkpoint_writes", "torch_persistent_save_atomic", "AtomicCopyPathManager"]

_fairseq_torch_persistent_save = checkpoint_utils.torch_persistent_save


def _local(path: str) -> bool:
    return not PathManager.path_requires_pathmanager(str(path))


def torch_persistent_save_atomic(obj, filename: str, async_write: bool = False) -> None:
    """fairseq's ``torch_persistent_save(obj, filename, async_write)``: ``filename`` is the old file or the whole
    new one at every moment, and durable once this returns."""
    if async_write or not _local(filename):
        return _fairseq_torch_persistent_save(obj, filename, async_write=async_write)
    with atomic_path(filename, suffix=".tmp", durable=True) as tmp:
        with open_temp(tmp) as f:
            torch.save(obj, f)


class AtomicCopyPathManager(PathManager):
    """fairseq's ``PathManager`` whose ``copy`` of local files goes through a temp file and ``os.replace``."""

    @staticmethod
    def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
        if not (_local(src_path) and _local(dst_path)):
            return PathManager.copy(src_path, dst_path, overwrite=overwrite)
        if not overwrite and os.path.exists(dst_path):
            return False
        copy_file_atomic(src_path, dst_path)
        return True


def install_atomic_checkpoint_writes() -> None:
    """Point ``fairseq.checkpoint_utils.torch_persistent_save`` and ``fairseq.checkpoint_utils.PathManager`` at
    the atomic versions (idempotent)."""
    checkpoint_utils.torch_persistent_save = torch_persistent_save_atomic
    checkpoint_utils.PathManager = AtomicCopyPathManager
