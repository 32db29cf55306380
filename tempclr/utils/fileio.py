"""Atomic file and folder writes: a reader never sees a half-written file, and a failed write leaves nothing.

Everything tempclr writes (configs, shards, predictions, metrics, pictures, demo data) goes through here.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import shutil
import tempfile
from typing import Any, Callable, Iterator


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a file name inside a folder, or None: it must be a non-empty string without a path
    separator, NUL or other control character, and not ``.`` or ``..`` (so joined to a folder it names a file
    directly in it, never one elsewhere)."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name:
        return "is empty"
    if name in (".", ".."):
        return "is a relative folder reference"
    if "\0" in name:
        return "holds a NUL character"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "holds a control character"
    separators = {sep for sep in (os.sep, os.altsep, "/") if sep}
    if any(sep in name for sep in separators):
        return "is an absolute path" if os.path.isabs(name) else "holds a path separator"
    return None


def check_name(name: object, source: str, row: object, what: str = "id") -> str:
    """``name`` (an id read from row ``row`` of ``source``; None for a file without rows) when it can name a file
    inside a folder; else a ``ValueError`` naming the file, the row and the fix."""
    problem = name_problem(name)
    if problem is not None:
        where = source if row is None else f"{source}, row {row}"
        raise ValueError(f"{where}: {what} {name!r} {problem}; ids name files inside a folder, so they may not "
                         "hold '/', '..', an absolute path or NUL: fix the id")
    return name  # type: ignore[return-value]


def contained_path(folder: str, name: object, source: str, row: object, what: str = "id") -> str:
    """``<folder>/<name>`` for ``name`` read from row ``row`` of ``source``, after :func:`check_name`: the result
    is always a direct child of ``folder``."""
    return os.path.join(folder, check_name(name, source, row, what))


def umask_mode(directory: bool = False) -> int:
    """The permissions a plain ``open()`` / ``os.mkdir()`` would give under the process umask (``0o644`` /
    ``0o755`` for the usual 022).  Temp files and folders are created private (0600 / 0700); what the atomic
    writers move into place gets these instead, so outputs are readable by the group as any other file."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def fsync_file(path: str) -> None:
    """Push ``path``'s data to the disk (``fsync`` on a fresh descriptor flushes what any writer left in the page
    cache)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str) -> None:
    """Make a rename or a new entry in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def temp_name_prefix(path: str) -> str:
    """The name prefix of :func:`atomic_path`'s temp files for ``path`` (``.<name>.``); they end in the suffix
    given there.  A crash between creating one and the final rename leaves it behind, never ``path`` itself."""
    return f".{os.path.basename(path)}."


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ".tmp", durable: bool = False) -> Iterator[str]:
    """Yield a fresh temp path in ``path``'s folder (created if needed); when the block succeeds the temp file is
    moved onto ``path`` with ``os.replace``, when it fails the temp file is removed.  ``suffix`` matters to
    writers that look at the name (``np.save`` adds ``.npy`` otherwise).  With ``durable`` the temp file is
    fsync'd before the rename and the folder after it, so that a machine crash, not only a killed process, finds
    either the old file or the whole new one.  The temp file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW``
    (``mkstemp``); writers open it with :func:`open_temp`, which refuses a symbolic link put in its place."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=temp_name_prefix(path), suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        with open_temp(tmp, "ab") as f:  # its mode, set on the file itself, never through a link
            os.fchmod(f.fileno(), umask_mode())
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_dir(folder)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        full = no_space_in(error)
        if full is not None:
            raise no_space_error(full, path) from error
        raise


NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def no_space_in(error: BaseException) -> OSError | None:
    """The full-disk ``OSError`` (see :func:`no_space_error`) that ``error`` is or was raised during (torch's
    checkpoint writer turns one into a ``RuntimeError`` about a zip position), or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS:
            return error
        error = error.__cause__ or error.__context__
    return None


def no_space_error(error: OSError, path: str) -> OSError:
    """``error`` itself, or for a full disk, an exhausted quota or a file-size limit (``ENOSPC``, ``EDQUOT``,
    ``EFBIG``, whose messages name no file) a new ``OSError`` of the same errno naming ``path``, saying that the
    earlier file there (if any) is unchanged and what to do."""
    if not isinstance(error, OSError) or error.errno not in NO_SPACE_ERRNOS:
        return error
    folder = os.path.dirname(os.path.abspath(path))
    return OSError(error.errno, f"{path}: could not be written ({error.strerror or error}): the disk holding {folder} "
                                "is full, or a quota or file-size limit was reached; nothing was replaced (an "
                                "earlier file of that name is unchanged). Free space there or write elsewhere, "
                                "then run again")


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def open_temp(tmp: str, mode: str = "wb", encoding: str | None = None):
    """Open :func:`atomic_path`'s temp file ``tmp`` for writing without following a symbolic link: ``mkstemp``
    created it (``O_CREAT | O_EXCL | O_NOFOLLOW``), and a link put in its place since then is refused, naming it,
    so no other file is written through it."""
    try:
        return open(tmp, mode, encoding=encoding, opener=_open_nofollow)
    except OSError as error:
        if error.errno == errno.ELOOP or os.path.islink(tmp):
            raise OSError(error.errno, f"{tmp}: the temp file was replaced by a symbolic link (to "
                                       f"{os.readlink(tmp)!r}) while tempclr wrote it; nothing was written through "
                                       "it. Check who else writes in that folder") from None
        raise


def _open_nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | _NOFOLLOW)


def copy_file_atomic(src: str, dst: str, suffix: str = ".tmp") -> str:
    """Copy ``src`` to ``dst`` through a temp file beside ``dst``, fsync'd, then ``os.replace``: ``dst`` is the
    old file or the whole copy, never a part (``shutil.copyfile`` truncates ``dst`` first and then fills it, so
    a process killed during it leaves a short file under the final name).  Returns ``dst``."""
    with atomic_path(dst, suffix=suffix, durable=True) as tmp, open(src, "rb") as source, \
            open_temp(tmp) as target:
        shutil.copyfileobj(source, target, 1 << 20)
    return dst


def write_text_atomic(path: str, text: str) -> None:
    with atomic_path(path) as tmp, open_temp(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def numpy_to_json(value: Any) -> Any:
    """``json.dump`` default: numpy scalars and arrays as Python numbers and lists; any other type is a
    ``TypeError`` naming it."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"a value of type {type(value).__name__} cannot be written as JSON")


def write_json_atomic(path: str, payload: Any, default: Callable[[Any], Any] | None = None) -> None:
    with atomic_path(path) as tmp, open_temp(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, default=default)


def write_pickle_atomic(path: str, obj: Any) -> None:
    with atomic_path(path, suffix=".pkl") as tmp, open_temp(tmp) as f:
        pickle.dump(obj, f, protocol=4)


@contextlib.contextmanager
def atomic_dir(out_dir: str) -> Iterator[str]:
    """Yield a temp folder beside ``out_dir`` to build in; on success it replaces ``out_dir`` (callers check
    first that an existing ``out_dir`` is theirs to replace), on failure it is removed."""
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    try:
        yield tmp
        os.chmod(tmp, umask_mode(directory=True))
        if os.path.lexists(out_dir):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=parent)
            os.replace(out_dir, os.path.join(old, "previous"))
            os.replace(tmp, out_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def output_dir_problem(out_dir: str) -> str | None:
    """Why ``out_dir`` cannot be made or written, or None: checked before a tool reads its inputs, so that it
    fails at once, not after the work (an existing file in its place or above it, a folder without write
    permission)."""
    path = os.path.abspath(out_dir)
    if os.path.lexists(path) and not os.path.isdir(path):
        return f"{out_dir} exists and is not a folder; remove it or choose another output folder"
    probe = path
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        return (f"{out_dir} cannot be created: {probe} is a file, not a folder; remove it or choose another "
                "output folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{out_dir} cannot be written: {probe} is not writable by this user; fix its permissions or " \
               "choose another output folder"
    return None


def check_output_dir(out_dir: str, what: str = "output folder") -> str:
    """``out_dir`` when :func:`output_dir_problem` finds nothing wrong, else a ``ValueError`` naming it."""
    problem = output_dir_problem(out_dir)
    if problem is not None:
        raise ValueError(f"{what}: {problem}")
    return out_dir


@contextlib.contextmanager
def staged_output_set(out_dir: str, in_set: Callable[[str], bool]) -> Iterator[str]:
    """Replace the set of files of ``out_dir`` whose names satisfy ``in_set`` as a whole.

    Yields a staging folder beside ``out_dir`` (``.<name>.staging-*``) to write the new set in.  When the block
    fails, the staging folder is removed and ``out_dir`` is untouched (byte-identical).  When it succeeds, the
    old set's files that the new set does not hold are removed and every staged file is moved into ``out_dir``
    with ``os.replace``; files outside the set are kept.  An ``out_dir`` that does not exist yet becomes the
    staging folder itself, by one rename.
    """
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.staging-", dir=parent)
    try:
        yield staging
        os.chmod(staging, umask_mode(directory=True))
        if not os.path.lexists(out_dir):
            os.replace(staging, out_dir)
            fsync_dir(parent)
            return
        new_names = set(os.listdir(staging))
        for name in os.listdir(out_dir):
            if in_set(name) and name not in new_names and os.path.isfile(os.path.join(out_dir, name)):
                os.unlink(os.path.join(out_dir, name))
        for name in sorted(new_names):
            os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
        fsync_dir(out_dir)
        os.rmdir(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_npy_atomic(path: str, array) -> None:
    """``np.save`` (no pickles) through a temp file."""
    import numpy as np

    with atomic_path(path, suffix=".npy") as tmp, open_temp(tmp) as f:
        np.save(f, array, allow_pickle=False)


def npy_header(path: str) -> tuple[tuple[int, ...], Any]:
    """``(shape, dtype)`` from the header of the ``.npy`` file ``path``, after checking the file is as long as the
    header declares; a bad file is a ``ValueError`` naming it (see :func:`npy_problem`)."""
    problem, header = _npy_check(path)
    if problem is not None:
        raise ValueError(f"{path} is {problem}")
    return header


def npy_problem(path: str) -> str | None:
    """What is wrong with ``path`` as a ``.npy`` file, or None: reads only its header and compares the data size
    the header declares with the file's size (a truncated file fails here, not as numpy's nameless
    ``mmap length is greater than file size`` after the run has started)."""
    return _npy_check(path)[0]


def _npy_check(path: str) -> tuple[str | None, Any]:
    import numpy as np

    size = os.path.getsize(path)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
            header_end = f.tell()
    except (ValueError, OSError) as error:
        return f"not a readable .npy file ({error})", None
    if dtype.hasobject:
        return "holds Python objects (a pickled array), not numbers", None
    expected = header_end + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < expected:
        return (f"truncated: its header declares {dtype} {tuple(shape)} ({expected - header_end} bytes of data) but "
                f"the file holds {size - header_end}"), None
    if size > expected:
        return f"{size - expected} bytes longer than its header declares ({dtype} {tuple(shape)})", None
    return None, (tuple(int(d) for d in shape), dtype)


def load_npy(path: str, mmap_mode: str | None = None, fix: str = ""):
    """``np.load(path, mmap_mode)`` after :func:`npy_problem`; a bad file raises ``ValueError`` naming it and,
    when given, ``fix`` (how to make the file again)."""
    import numpy as np

    problem = npy_problem(path)
    if problem is not None:
        raise ValueError(f"{path} is {problem}" + (f"; {fix}" if fix else ""))
    return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)


def load_captions(caption_path: str) -> dict[str, Any]:
    """``id -> {"start", "end", "text"}`` from a ``.json`` or ``.pkl`` caption file (values may be json strings,
    as the caption dedup step writes them).  Shared by the dedup step and the pretokenisation."""
    import json

    from .safe_pickle import load_pickle

    if not os.path.isfile(caption_path):
        raise FileNotFoundError(f"caption file not found: {caption_path}")
    if caption_path.endswith(".json"):
        with open(caption_path, encoding="utf-8") as f:
            captions = json.load(f)
    elif caption_path.endswith(".pkl"):
        captions = load_pickle(caption_path)
    else:
        raise ValueError(f"{caption_path}: caption file must end in .json or .pkl")
    if not isinstance(captions, dict):
        raise ValueError(f"{caption_path}: expected a dict video_id -> captions, got {type(captions).__name__}")
    return captions
