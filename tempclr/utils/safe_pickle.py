"""Every pickle tempclr reads goes through here: unpickling may only rebuild data, never run code.

A pickle names the functions and classes that rebuild its objects (its ``GLOBAL`` / ``STACK_GLOBAL`` opcodes), and
a plain ``pickle.load`` imports and calls whatever it names (``os.system``, ``builtins.open``, ...).  The data files
researchers exchange (YouCook2's ``youcook_val.pkl``, HowTo100M shard ``*_meta.pkl``, caption ``.pkl``, retrieval
group files, saved predictions) hold only lists, dicts, strings, numbers and numpy arrays, so :func:`load_pickle`
admits exactly the globals that rebuild those (:data:`DATA_GLOBALS`) and refuses every other one before importing
it, with an error naming the file and the refused global.

Checkpoints go through torch's own restricted unpickler (``torch.load(weights_only=True)``), which rebuilds
tensors; :data:`CHECKPOINT_GLOBALS` is what a checkpoint holds beyond that, found in real files (a fairseq-train
checkpoint of this project and the released layout): ``argparse.Namespace`` (``args`` of released checkpoints,
``cfg.model`` / ``cfg.task`` / ``cfg.criterion`` of fairseq 0.12's legacy tasks), ``collections.OrderedDict``
(state dicts, logging meters) and numpy scalars (meter values some criterions log).  :func:`allow_in_torch`
registers them with torch process-wide, since fairseq's own ``torch.load`` of the resume checkpoint needs them;
:func:`load_torch` turns torch's refusal into the same error as :func:`load_pickle`.
"""
from __future__ import annotations

import _compat_pickle
import importlib
import os
import pickle
import re
from typing import Any, BinaryIO

__all__ = ["DATA_GLOBALS", "CHECKPOINT_GLOBALS", "RefusedPickleError", "load_pickle", "load_npy_object_array",
           "allow_in_torch", "require_weights_only_default", "load_torch", "refusal"]

_BUILTIN_DATA = ("set", "frozenset", "bytearray", "complex", "slice", "range")
_NUMPY_DATA = ("multiarray._reconstruct", "multiarray.scalar", "numeric._frombuffer")

# "module.name" of every global a data pickle may name.  Python 2 protocol pickles say __builtin__ where Python 3
# says builtins; numpy 1.x wrote numpy.core where numpy 2 writes numpy._core.
DATA_GLOBALS: frozenset[str] = frozenset(
    [f"{module}.{name}" for module in ("builtins", "__builtin__") for name in _BUILTIN_DATA]
    + [f"{package}.{name}" for package in ("numpy.core", "numpy._core") for name in _NUMPY_DATA]
    + ["__builtin__.xrange",  # Python 3's range, as protocol 2 names it
       "numpy.ndarray", "numpy.dtype", "collections.OrderedDict",
       "_codecs.encode"]  # how protocol 2 stores bytes (numpy array buffers among them)
)

# the numeric numpy dtypes: torch rebuilds a numpy scalar's dtype only when its class (numpy.dtypes.Float64DType,
# ...) is allowed too, although the pickle does not name it
_NUMPY_DTYPE_CLASSES = tuple(f"numpy.dtypes.{name}DType" for name in (
    "Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float16", "Float32",
    "Float64", "LongDouble", "Complex64", "Complex128", "CLongDouble"))

# beyond torch's own tensor rebuilding: what real checkpoints hold (see the module docstring)
# (collections.Counter: torch's weights-only loader admits it by default, so checkpoints may hold it)
CHECKPOINT_GLOBALS: frozenset[str] = (DATA_GLOBALS | {"argparse.Namespace", "collections.Counter"}
                                      | frozenset(_NUMPY_DTYPE_CLASSES))

_DATA_WORDS = "lists, dicts, strings, numbers, numpy arrays"
_TORCH_REFUSAL = re.compile(r"GLOBAL (\S+) (?:was not an allowed global|whose module)")
_TORCH_DETAIL = re.compile(r"WeightsUnpickler error: (.*?)\s*(?:Check the documentation|$)", re.S)


class RefusedPickleError(ValueError):
    """A pickle names a global outside the allowlist; the message names the file and the global."""


def refusal(source: str, name: str, checkpoint: bool = False) -> RefusedPickleError:
    """The error for ``source`` naming ``name``, a global it would import and call."""
    holds = _DATA_WORDS + (", tensors and argparse.Namespace" if checkpoint else "")
    made_by = ("written by fairseq-train or released with VideoCLIP/TempCLR" if checkpoint
               else "made by tempclr (or the original VideoCLIP/TempCLR release)")
    return RefusedPickleError(
        f"{source}: refused to load {name!r} (a {'checkpoint' if checkpoint else 'pickle'} may only hold data: "
        f"{holds}; loading this one could run code). Was this file {made_by}? Use files from a source you "
        "trust, or write them again from plain lists, dicts and numpy arrays")


class _DataUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, source: str, allowed: frozenset[str]) -> None:
        super().__init__(file)
        self._source = source
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        if f"{module}.{name}" not in self._allowed:
            raise refusal(self._source, f"{module}.{name}")
        if module.startswith("numpy.core"):  # numpy 2 still answers to it, with a DeprecationWarning on import
            module = "numpy._core" + module[len("numpy.core"):]
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickleError(f"{self._source}: holds a persistent id ({pid!r}), as torch checkpoints do, "
                                 "not plain data; load checkpoints with tempclr.utils.checkpoint")


def _unpickle(f: BinaryIO, source: str) -> Any:
    try:
        return _DataUnpickler(f, source, DATA_GLOBALS).load()
    except RefusedPickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, UnicodeDecodeError) as error:
        raise ValueError(f"{source}: not a readable pickle ({type(error).__name__}: {error}); the file is "
                         "damaged or not a pickle: make it again") from error


def load_pickle(path: str) -> Any:
    """The object pickled in ``path``, rebuilt from :data:`DATA_GLOBALS` only.  Raises
    :class:`RefusedPickleError` naming the file and the global for anything else (nothing of it is imported or
    called), ``ValueError`` naming the file for a damaged one, ``FileNotFoundError`` for a missing one."""
    with open(path, "rb") as f:
        return _unpickle(f, path)


def load_npy_object_array(path: str):
    """A ``.npy`` file as ``np.load(path, allow_pickle=True)`` reads it, with an object array's pickle read by
    the same restricted unpickler (numbers-only arrays are read by numpy without pickle)."""
    import numpy as np

    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            _, _, dtype = read_header(f)
        except ValueError as error:
            raise ValueError(f"{path}: not a readable .npy file ({error})") from error
        if not dtype.hasobject:
            return np.load(path, allow_pickle=False)
        array = _unpickle(f, path)
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path}: its pickle holds a {type(array).__name__}, not an array")
    return array


def _named(name: str) -> Any:
    """The entry for ``torch.serialization.add_safe_globals``: the object, or ``(the object, name)`` when a
    pickle names it otherwise than its own module (Python 2 and numpy 1.x names, resolved as the unpickler
    resolves them)."""
    module, _, attr = name.rpartition(".")
    module, attr = _compat_pickle.NAME_MAPPING.get((module, attr), (module, attr))
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    if module.startswith("numpy.core"):
        module = "numpy._core" + module[len("numpy.core"):]
    found = getattr(importlib.import_module(module), attr)
    own = f"{getattr(found, '__module__', '')}.{getattr(found, '__qualname__', '')}"
    return found if own == name else (found, name)


def allow_in_torch() -> None:
    """Let ``torch.load(weights_only=True)`` rebuild :data:`CHECKPOINT_GLOBALS` in this process (idempotent):
    ours and fairseq's checkpoint loads (fairseq relies on torch's default, ``weights_only=True``)."""
    import torch

    known = {entry[1] if isinstance(entry, tuple) else f"{entry.__module__}.{entry.__qualname__}"
             for entry in torch.serialization.get_safe_globals()}
    torch.serialization.add_safe_globals([_named(name) for name in sorted(CHECKPOINT_GLOBALS - known)])


def require_weights_only_default() -> None:
    """fairseq's ``torch.load`` of the resume checkpoint passes no ``weights_only``, so torch's default
    (``True`` since 2.6) keeps it restricted, unless ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` turns it off: that is
    an error here, before fairseq reads a checkpoint."""
    if os.getenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0").lower() in ("1", "y", "yes", "true"):
        raise RuntimeError("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set: fairseq would then unpickle checkpoints "
                           "without restriction, running whatever code a checkpoint names. Unset it; tempclr "
                           "loads fairseq's and the released checkpoints with weights_only=True")


def load_torch(path: str) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with :data:`CHECKPOINT_GLOBALS` allowed; a
    global outside them raises :class:`RefusedPickleError` naming the file and the global, anything else the
    weights-only reader cannot read a ``pickle.UnpicklingError`` naming the file."""
    import torch

    allow_in_torch()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = _TORCH_REFUSAL.search(str(error))
        if found is not None:
            raise refusal(path, found.group(1), checkpoint=True) from None
        detail = _TORCH_DETAIL.search(str(error))
        what = " ".join(detail.group(1).split()) if detail else str(error).strip().splitlines()[-1]
        # not a refused global: a damaged or foreign file (or an opcode the weights-only reader lacks); nothing ran
        raise pickle.UnpicklingError(f"{path}: not a readable PyTorch checkpoint ({what}); a checkpoint may only "
                                     f"hold {_DATA_WORDS}, tensors and argparse.Namespace") from None
