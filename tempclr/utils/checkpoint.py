"""Read fairseq / tempclr checkpoints and load their weights strictly.

The original loader used ``load_state_dict(strict=False)``, so a checkpoint of the wrong model loaded
"successfully" with random weights.  :func:`load_model_weights` instead fails, by default, on any missing or
unexpected key, naming them.  The only tolerated difference is ``*.embeddings.position_ids``: transformers 3.x
stored it as a persistent buffer, transformers 5.x rebuilds it as a non-persistent ``arange`` buffer; a stored copy
must equal ``arange`` (else it would have changed the results of the original) and is then dropped.

Resuming a training run (:func:`prepare_save_dir`, called by the fairseq task before fairseq reads anything): the
run's ``save_dir`` is locked, partial checkpoint files that a killed run left are removed, and when a newer
complete checkpoint than ``checkpoint_last.pt`` exists (a crash after fairseq wrote ``checkpointN.pt`` and before
it copied it to ``checkpoint_last.pt``) the run resumes from that one.  "Newer" is judged by what the checkpoints
hold, not by file times: the update count and the data iterator's place (epoch, batches into it) that fairseq
stores in each.  Reading them costs only the checkpoint's pickled index (``data.pkl``), never its tensor data:
about 30 ms for a 2 GB checkpoint with 1800 tensors, so every checkpoint of ``save_dir`` is read.  File times
change with copies (``cp``, ``rsync`` without ``-t``) and ``checkpoint_last.pt``, a later copy, always looks newest.
"""
from __future__ import annotations

import glob
import logging
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
from torch import nn

from .safe_pickle import CHECKPOINT_GLOBALS, RefusedPickleError, load_torch, refusal

__all__ = ["LoadReport", "CheckpointError", "CheckpointProgress", "checkpoint_problem", "checkpoint_progress",
           "check_resume_checkpoint", "newer_checkpoint", "remove_partial_checkpoints", "prepare_save_dir",
           "load_checkpoint_state", "load_model_weights", "save_untrained_checkpoint"]

logger = logging.getLogger(__name__)
DEFAULT_RESTORE_FILE = "checkpoint_last.pt"
# the names fairseq-train gives checkpoints (no --checkpoint-suffix): per epoch, per N updates, best, best-k, last
FAIRSEQ_CHECKPOINT = re.compile(r"^checkpoint(\d+|_\d+_\d+|_best|_last|\.best_.+)\.pt$")
# temp files of a checkpoint write that did not finish: fairseq's own (checkpoint2.pt.tmp) and
# tempclr.utils.fileio.atomic_path's (.checkpoint2.pt.<random>.tmp)
PARTIAL_CHECKPOINT = re.compile(r"^(checkpoint[^/]*\.pt\.tmp|\.checkpoint[^/]*\.pt\..+\.tmp)$")

MODEL_PREFIX = "mmmodel."
POSITION_IDS_SUFFIX = "embeddings.position_ids"
_MAX_LISTED = 30


@dataclass
class LoadReport:
    """What :func:`load_model_weights` did, key names without the ``mmmodel.`` prefix."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped_position_ids: list[str] = field(default_factory=list)
    cast: list[str] = field(default_factory=list)  # stored in another dtype (fp16/bf16) than the model's


class CheckpointError(ValueError):
    """A file that should be a checkpoint is not a readable one; the message names the file and what it is."""


def checkpoint_problem(path: str) -> Optional[str]:
    """What is wrong with ``path`` as a torch checkpoint, in a few words, or None when it looks readable.

    Cheap: reads the first bytes and, for torch's zip format, the archive's directory at the end of the file, so a
    truncated file is found without reading it all."""
    if not os.path.isfile(path):
        return "missing"
    size = os.path.getsize(path)
    if size == 0:
        return "empty (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x93NUMPY"):
        return "a numpy .npy array, not a checkpoint"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return f"truncated or damaged ({size} bytes; its zip directory is unreadable)"
        if not any(name.endswith("data.pkl") for name in names):
            return "a zip file without data.pkl, not a torch checkpoint"
        return None
    if head[:1] == b"\x80":  # torch's legacy (pre-1.6) pickle format
        return None
    return f"not a torch checkpoint (starts with bytes {head[:4]!r})"


def _load_torch_file(path: str) -> Any:
    """The checkpoint through torch's weights-only unpickler with tempclr's allowlist
    (:func:`tempclr.utils.safe_pickle.load_torch`): a global outside it is a ``RefusedPickleError`` naming the
    file and the global, nothing of it run."""
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CheckpointError(f"checkpoint {path} is {problem}; point fairseq.common_eval.path / restore_file at "
                              "a checkpoint written by fairseq-train (checkpoint_best.pt, checkpoint_last.pt)")
    try:
        return load_torch(path)
    except RefusedPickleError:
        raise
    except (EOFError, RuntimeError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} could not be read ({type(error).__name__}: {error}); it is "
                              "probably truncated: take another checkpoint of the run") from error


@dataclass(frozen=True, order=True)
class CheckpointProgress:
    """How far a fairseq-train checkpoint is into its run; later runs compare greater."""

    num_updates: int
    epoch: int  # the epoch the data iterator continues with (the next one after an end-of-epoch checkpoint)
    iterations_in_epoch: int  # batches of that epoch already trained

    def __str__(self) -> str:  # as fairseq's "Loaded checkpoint ... (epoch 3 @ 16 updates)" says it
        return f"epoch {self.epoch} @ {self.num_updates} updates"


class _Opaque:
    """Stands for every object in a checkpoint's pickle that :func:`checkpoint_progress` does not read: no class is
    imported and nothing of the checkpoint is executed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _IndexUnpickler(pickle.Unpickler):
    """Unpickles a torch zip checkpoint's ``data.pkl`` without its tensors (storages are references into the
    archive: they become None) and with placeholders for every class.  A global outside torch and outside
    :data:`~tempclr.utils.safe_pickle.CHECKPOINT_GLOBALS` is refused here already, so that a resume names it
    before fairseq's ``torch.load`` meets it (torch's own globals are judged by ``torch.load`` itself)."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if module != "torch" and not module.startswith("torch.") and f"{module}.{name}" not in CHECKPOINT_GLOBALS:
            raise refusal(self._source, f"{module}.{name}", checkpoint=True)
        return _Opaque

    def persistent_load(self, pid: Any) -> None:
        return None


def _progress_of(state: Any) -> Optional[CheckpointProgress]:
    try:
        num_updates = state["optimizer_history"][-1]["num_updates"]
        iterator = state["extra_state"]["train_iterator"]
        progress = CheckpointProgress(int(num_updates), int(iterator["epoch"]),
                                      int(iterator.get("iterations_in_epoch", 0)))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None
    return progress


def checkpoint_progress(path: str) -> Optional[CheckpointProgress]:
    """The progress fairseq-train stored in checkpoint ``path`` (``optimizer_history[-1]["num_updates"]`` and
    ``extra_state["train_iterator"]``), or None for a checkpoint that holds none (not written by fairseq-train).

    Reads only the pickled index of torch's zip format (tens of ms whatever the checkpoint's size); a file in
    torch's legacy format is loaded whole.  Raises :class:`CheckpointError` naming the file when it is not a
    readable checkpoint."""
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CheckpointError(f"checkpoint {path} is {problem}")
    try:
        with zipfile.ZipFile(path) as archive:
            index = next(name for name in archive.namelist() if name.endswith("data.pkl"))
            with archive.open(index) as f:
                state = _IndexUnpickler(f, path).load()
    except zipfile.BadZipFile:  # the legacy format: checkpoint_problem accepted its pickle header
        state = _load_torch_file(path)
    except RefusedPickleError:
        raise
    except Exception as error:  # a damaged index: zipfile, pickle and the placeholders raise many kinds
        raise CheckpointError(f"checkpoint {path} could not be read ({type(error).__name__}: {error}); it is "
                              "probably damaged") from error
    return _progress_of(state) if isinstance(state, Mapping) else None


def _restore_path(save_dir: str, restore_file: str) -> str:
    """The file fairseq-train resumes from: the default name inside ``save_dir``, any other name as given."""
    if restore_file == DEFAULT_RESTORE_FILE:
        return os.path.join(save_dir, DEFAULT_RESTORE_FILE)
    return restore_file


def check_resume_checkpoint(save_dir: str, restore_file: str = DEFAULT_RESTORE_FILE) -> None:
    """Before fairseq resumes from ``restore_file`` (``checkpoint_last.pt`` of ``save_dir`` by default): if that
    file exists but is not readable, raise naming it and the newest readable ``checkpoint*.pt`` of ``save_dir``
    (by the progress stored inside, then by file time for checkpoints without any) to resume from instead.  A
    readable one that names a global outside the checkpoint allowlist raises ``RefusedPickleError``."""
    path = _restore_path(save_dir, restore_file)
    if not os.path.exists(path):
        return
    problem = checkpoint_problem(path)
    if problem is None:
        checkpoint_progress(path)  # a global outside the allowlist is refused here, naming the file
        return
    ranked = []
    for other in glob.glob(os.path.join(save_dir, "checkpoint*.pt")):
        if os.path.abspath(other) == os.path.abspath(path) or checkpoint_problem(other) is not None:
            continue
        try:
            progress = checkpoint_progress(other)
        except CheckpointError:
            continue
        ranked.append(((progress is not None, progress or CheckpointProgress(0, 0, 0), os.path.getmtime(other)),
                       other))
    ranked.sort(reverse=True)
    fix = (f"resume from the newest readable one, {ranked[0][1]}: set fairseq.checkpoint.restore_file to it"
           if ranked else "no other readable checkpoint*.pt is in that folder: delete the file to start over")
    raise CheckpointError(f"cannot resume: {path} is {problem}; {fix}")


def newer_checkpoint(save_dir: str) -> Optional[tuple[str, CheckpointProgress, Optional[CheckpointProgress]]]:
    """The checkpoint of ``save_dir`` that holds a later state of the run than ``checkpoint_last.pt`` (or any
    state, when there is no ``checkpoint_last.pt``): ``(path, its progress, checkpoint_last.pt's progress or
    None)``, or None when ``checkpoint_last.pt`` is the latest.  Read-only.

    Every file with a fairseq-train checkpoint name is compared (``checkpointN.pt``, ``checkpoint_N_M.pt``,
    ``checkpoint_best.pt``, ``checkpoint.best_*.pt``: fairseq writes one of them first and copies it to the
    others).  Raises :class:`CheckpointError` for an unreadable ``checkpoint_last.pt`` (naming the newest readable
    checkpoint) and for an unreadable other one, which may hold the latest state: the message names the file and
    the fix."""
    last = os.path.join(save_dir, DEFAULT_RESTORE_FILE)
    check_resume_checkpoint(save_dir)
    last_progress = checkpoint_progress(last) if os.path.exists(last) else None
    if os.path.exists(last) and last_progress is None:
        return None  # not fairseq-train's checkpoint: nothing to compare it with, fairseq decides
    best: Optional[tuple[CheckpointProgress, str]] = None
    for name in sorted(os.listdir(save_dir)) if os.path.isdir(save_dir) else []:
        if not FAIRSEQ_CHECKPOINT.match(name) or name == DEFAULT_RESTORE_FILE:
            continue
        path = os.path.join(save_dir, name)
        try:
            progress = checkpoint_progress(path)
        except CheckpointError as error:
            keep = (f"to resume from {last}" if os.path.exists(last)
                    else "to start the run from the beginning")
            raise CheckpointError(f"cannot resume: {error}; it may hold a later state of the run than "
                                  f"{DEFAULT_RESTORE_FILE}, so the resume does not guess. Move it out of {save_dir} "
                                  f"(or delete it) {keep}, or set fairseq.checkpoint.save_dir to a new folder"
                                  ) from None
        if progress is not None and (last_progress is None or progress > last_progress) and (
                best is None or progress > best[0]):
            best = (progress, path)
    return None if best is None else (best[1], best[0], last_progress)


def remove_partial_checkpoints(save_dir: str) -> list[str]:
    """Delete the temp files of checkpoint writes that a killed run left in ``save_dir`` and return their paths.
    Call only while holding the ``save_dir`` lock (no other run writes there)."""
    removed = []
    for name in sorted(os.listdir(save_dir)) if os.path.isdir(save_dir) else []:
        if PARTIAL_CHECKPOINT.match(name):
            path = os.path.join(save_dir, name)
            os.remove(path)
            removed.append(path)
    return removed


def _settle_resume(save_dir: str, restore_file: str, checkpoint_suffix: str = "") -> str:
    """Rank 0's part of :func:`prepare_save_dir`, under the lock; returns the file the resume reads."""
    from .fileio import copy_file_atomic

    for path in remove_partial_checkpoints(save_dir):
        logger.info(f"removed {path}: part of a checkpoint that an earlier run was writing when it stopped")
    if restore_file != DEFAULT_RESTORE_FILE:  # the user named the file: fairseq reads that one, if it is readable
        check_resume_checkpoint(save_dir, restore_file)
        return _restore_path(save_dir, restore_file)
    if checkpoint_suffix:  # sharded checkpoints (checkpoint_last<suffix>.pt): only checked, never replaced
        suffixed = os.path.join(save_dir, f"checkpoint_last{checkpoint_suffix}.pt")
        check_resume_checkpoint(save_dir, suffixed)
        return suffixed
    last = os.path.join(save_dir, DEFAULT_RESTORE_FILE)
    newer = newer_checkpoint(save_dir)
    if newer is not None:
        path, progress, last_progress = newer
        was = f"{last} ({last_progress})" if last_progress is not None else f"{last} (missing)"
        copy_file_atomic(path, last)
        logger.info(f"resuming from {path} ({progress}) instead of {was}: the run stopped after writing the "
                    f"first and before copying it to {DEFAULT_RESTORE_FILE}; {DEFAULT_RESTORE_FILE} is now a copy "
                    "of it")
    return last


def prepare_save_dir(save_dir: str, restore_file: str = DEFAULT_RESTORE_FILE, checkpoint_suffix: str = "") -> str:
    """Make ``save_dir`` this run's and settle what the run resumes from, before fairseq-train reads or writes
    anything there.  Returns the path fairseq will resume from (it may not exist: a fresh start).

    Rank 0 (the only rank that changes files) takes the ``save_dir`` lock for the life of the process
    (:mod:`tempclr.utils.save_dir_lock`), deletes partial checkpoint temp files, checks that the resume file is
    readable and, with the default ``restore_file``, copies a newer complete checkpoint onto
    ``checkpoint_last.pt`` (:func:`newer_checkpoint`; one log line names both files).  With fairseq's
    ``checkpoint_suffix`` (sharded checkpoints) ``checkpoint_last<suffix>.pt`` is only checked.  With a process
    group every rank then learns rank 0's verdict, so all resume from the same file or all fail with rank 0's error
    (``CheckpointError``, ``SaveDirInUseError``), none waiting forever for a failed rank 0."""
    import torch.distributed as dist

    from . import get_rank, get_world_size
    from .save_dir_lock import SaveDirInUseError, acquire_save_dir, release_save_dir

    failure: Optional[BaseException] = None
    verdict: tuple[str, str] = ("ok", _restore_path(save_dir, restore_file))
    if get_rank() == 0:
        taken = False
        try:
            taken = acquire_save_dir(save_dir)
            verdict = ("ok", _settle_resume(save_dir, restore_file, checkpoint_suffix))
        except Exception as error:  # every rank must hear of it, whatever it is
            failure = error
            verdict = (type(error).__name__, str(error))
            if taken:
                release_save_dir(save_dir)
    if get_world_size() > 1:
        box = [verdict]
        dist.broadcast_object_list(box, src=0)
        verdict = box[0]
    if failure is not None:
        raise failure
    kind, text = verdict
    if kind == "ok":
        return text
    known = {"CheckpointError": CheckpointError, "SaveDirInUseError": SaveDirInUseError,
             "RefusedPickleError": RefusedPickleError}
    if kind in known:
        raise known[kind](text)
    raise RuntimeError(f"rank 0 could not prepare save_dir {save_dir}: {kind}: {text}")


def load_checkpoint_state(path: str) -> dict:
    """Model state dict of a checkpoint file: ``ckpt["state_dict"]`` if present, else ``ckpt["model"]``.

    Loads on the CPU with torch's weights-only unpickler and tempclr's allowlist (tensors, containers, numpy
    arrays and scalars, ``argparse.Namespace``: what fairseq-train's and the released checkpoints hold): a
    checkpoint naming anything else raises ``RefusedPickleError`` naming the file and the global, and nothing of
    it runs.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = _load_torch_file(path)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(
            f"{path}: expected a dict with a 'state_dict' or 'model' entry, got {type(checkpoint).__name__}")
    for key in ("state_dict", "model"):
        if key in checkpoint:
            state = checkpoint[key]
            if not isinstance(state, Mapping):
                raise ValueError(f"{path}: checkpoint['{key}'] is a {type(state).__name__}, not a state dict")
            return dict(state)
    raise ValueError(f"{path}: no 'state_dict' or 'model' entry (top-level keys: {sorted(map(str, checkpoint))}); "
                     "a bare state dict should be saved as {'model': state_dict}")


def _strip_prefix(state: Mapping[str, Any], model_keys: set) -> dict:
    """Drop a leading ``mmmodel.``; keep it when the model itself is the fairseq wrapper (keys ``mmmodel.*``)."""
    wrapped = bool(model_keys) and all(key.startswith(MODEL_PREFIX) for key in model_keys)
    cleaned = {}
    for key, value in state.items():
        bare = key[len(MODEL_PREFIX):] if key.startswith(MODEL_PREFIX) else key
        cleaned[MODEL_PREFIX + bare if wrapped else bare] = value
    return cleaned


def settle_position_ids(state: dict, model_state: Mapping[str, torch.Tensor], source: str) -> list[str]:
    """The one rule for ``*.embeddings.position_ids`` (transformers 3.x saved these buffers, current transformers
    does not), applied to ``state`` in place: stored ones the model lacks are dropped after checking they are
    ``arange`` (anything else is a ValueError naming ``source``), ones the model has and ``state`` lacks are taken
    from ``model_state``.  Returns the dropped keys."""
    dropped = _drop_position_ids(state, set(model_state), source)
    for key, value in model_state.items():
        if key.endswith(POSITION_IDS_SUFFIX) and key not in state:
            state[key] = value
    return dropped


def _drop_position_ids(state: dict, model_keys: set, source: str) -> list[str]:
    dropped = []
    for key in sorted(k for k in state if k.endswith(POSITION_IDS_SUFFIX) and k not in model_keys):
        value = state.pop(key)
        expected = torch.arange(value.shape[-1]).expand(value.shape)
        if not torch.equal(value.to(torch.long).cpu(), expected):
            raise ValueError(f"{source}: '{key}' is not 0..{value.shape[-1] - 1}; this model rebuilds position ids "
                             "as arange and cannot reproduce a checkpoint with other position ids")
        dropped.append(key)
    return dropped


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def load_model_weights(model: nn.Module, state: Mapping[str, Any], strict: bool = True,
                       source: str = "checkpoint") -> LoadReport:
    """Load ``state`` (from :func:`load_checkpoint_state`) into ``model``.

    Strips a leading ``mmmodel.``, drops stored ``*.embeddings.position_ids`` (after checking they are
    ``arange``), checks shapes, and casts fp16/bf16 (or any other dtype) to the dtype of the model tensor each one
    loads into.
    With ``strict`` any missing or unexpected key raises ``ValueError`` naming the keys (``*.position_ids``
    missing from the checkpoint is always fine); without it they are only reported.  ``source`` names the file in
    error messages.
    """
    targets = model.state_dict()
    model_keys = set(targets)
    cleaned = _strip_prefix(state, model_keys)
    not_tensors = sorted(k for k, v in cleaned.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ValueError(f"{source}: entries that are not tensors: {_listed(not_tensors)}")
    report = LoadReport(dropped_position_ids=settle_position_ids(cleaned, targets, source))
    report.unexpected = sorted(k for k in cleaned if k not in model_keys)
    report.missing = sorted(k for k in model_keys if k not in cleaned)
    wrong_shape = [f"{k} {tuple(cleaned[k].shape)} vs model {tuple(targets[k].shape)}"
                   for k in sorted(model_keys & set(cleaned)) if tuple(cleaned[k].shape) != tuple(targets[k].shape)]
    if wrong_shape:
        raise ValueError(f"{source}: {len(wrong_shape)} tensors have the wrong shape: {_listed(wrong_shape)}")
    if strict and (report.missing or report.unexpected):
        raise ValueError(
            f"{source} does not match {type(model).__name__}: {len(report.missing)} missing keys "
            f"[{_listed(report.missing)}]; {len(report.unexpected)} unexpected keys [{_listed(report.unexpected)}]. "
            "Check that the checkpoint and config.model.model_cls / dataset.bert_name / "
            "model.num_hidden_video_layers describe the same model")
    to_load = {key: cleaned[key] for key in sorted(model_keys & set(cleaned))}
    report.cast = [key for key, value in to_load.items() if value.dtype != targets[key].dtype]
    # load_state_dict copies each tensor with Tensor.copy_, which casts to the model tensor's dtype one tensor
    # at a time (no full-precision copy of the whole checkpoint is held)
    model.load_state_dict(to_load, strict=False)
    report.loaded = list(to_load)
    return report


def save_untrained_checkpoint(model: nn.Module, path: str) -> str:
    """``{"model": model.state_dict()}`` written atomically to ``path`` (the demo reports' untrained baseline, in
    the layout :func:`load_checkpoint_state` reads).  Returns ``path``."""
    from .fileio import atomic_path

    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({"model": model.state_dict()}, tmp)
    return path
