"""One training run per ``save_dir``: an ``flock`` on ``<save_dir>/.tempclr.lock``.

Two fairseq-train runs on one ``save_dir`` overwrite each other's checkpoints, ``config.yaml``, retrieval
batches and tensorboard folder, and both exit 0.  The training process (rank 0 only: the ranks of one run must not
block each other) therefore holds an exclusive ``fcntl.flock`` on a lock file in ``save_dir`` for as long as it
lives; a second run fails at once, naming the holder.  The kernel drops the lock when the holder exits in any way,
``kill -9`` included, so a crashed run never leaves a stale lock: the file itself stays (with the last holder's
pid), but it is only locked while its holder lives.

The launcher takes the same lock for the moment it writes ``config.yaml`` (:func:`save_dir_locked`), so a second
launch fails before it writes anything.  Notes: a process that forks children while holding the lock (data
loader workers) shares it with them, so it is released when the last of them exits (workers of a killed run exit
within seconds; the error says so when the recorded holder is gone); ``flock`` needs a file system
that supports it (local disks, NFSv4; some cluster file systems need a mount option), and a file system that does
not is reported, not ignored.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from typing import Iterator

from .fileio import umask_mode

__all__ = ["LOCK_NAME", "SaveDirInUseError", "lock_file", "acquire_save_dir", "release_save_dir",
           "holds_save_dir", "save_dir_locked"]

LOCK_NAME = ".tempclr.lock"
_held: dict[str, int] = {}  # realpath(save_dir) -> descriptor holding the flock, for this process


class SaveDirInUseError(RuntimeError):
    """Another live process holds the ``save_dir`` lock; the message names the folder, the holder and the fix."""


def lock_file(save_dir: str) -> str:
    return os.path.join(save_dir, LOCK_NAME)


def _holder_text(fd: int) -> str:
    """``pid P on host H (PROGRAM, since TIME)`` from the lock file, as far as the holder has written it."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        text = f"pid {info['pid']} on host {info['host']} ({info['program']}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its pid yet"
    if info["host"] == socket.gethostname() and not _alive(int(info["pid"])):
        text += (" (that process has ended; processes it forked, such as data loader workers, still hold the lock "
                 "and exit within seconds)")
    return text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def holds_save_dir(save_dir: str) -> bool:
    """Whether this process holds the lock of ``save_dir``."""
    return os.path.realpath(save_dir) in _held


def acquire_save_dir(save_dir: str) -> bool:
    """Take the lock of ``save_dir`` (created if needed) for this process, until :func:`release_save_dir` or the
    process ends.  Returns False when this process already held it, True when it took it now.

    Raises :class:`SaveDirInUseError` when another process holds it, without waiting."""
    key = os.path.realpath(save_dir)
    if key in _held:
        return False
    os.makedirs(save_dir, exist_ok=True)
    path = lock_file(save_dir)
    try:  # never through a symbolic link: the pid written below would land in the link's target
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0),
                     umask_mode())
    except OSError as error:
        if error.errno == errno.ELOOP or os.path.islink(path):
            raise OSError(error.errno, f"the lock file {path} of save_dir is a symbolic link (to "
                                       f"{os.readlink(path)!r}); tempclr writes its lock only into a plain file. "
                                       "Remove the link (a run recreates the lock file)") from None
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = _holder_text(fd) if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
        os.close(fd)
        if holder is None:
            raise OSError(error.errno, f"cannot lock {path} ({error.strerror}): the file system of save_dir does "
                                       "not support flock; put fairseq.checkpoint.save_dir on one that does (a "
                                       "local disk, NFSv4, or a cluster file system mounted with flock support)"
                          ) from error
        raise SaveDirInUseError(
            f"save_dir {save_dir} is in use by another training run: {holder} holds its lock file {path}. Wait "
            "until that run ends, or set fairseq.checkpoint.save_dir to another folder") from None
    info = {"pid": os.getpid(), "host": socket.gethostname(), "program": os.path.basename(sys.argv[0]) or "python",
            "since": datetime.datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
    _held[key] = fd
    return True


def release_save_dir(save_dir: str) -> None:
    """Give the lock of ``save_dir`` back (nothing happens when this process does not hold it)."""
    fd = _held.pop(os.path.realpath(save_dir), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def save_dir_locked(save_dir: str) -> Iterator[None]:
    """Hold the lock of ``save_dir`` while the block runs; a lock this process already held stays held after."""
    taken = acquire_save_dir(save_dir)
    try:
        yield
    finally:
        if taken:
            release_save_dir(save_dir)
