"""Read fairseq / tempclr checkpoints and load their weights strictly.

The original loader used ``load_state_dict(strict=False)``, so a checkpoint of the wrong model loaded
"successfully" with random weights.  :func:`load_model_weights` instead fails, by default, on any missing or
unexpected key, naming them.  The only tolerated difference is ``*.embeddings.position_ids``: transformers 3.x
stored it as a persistent buffer, transformers 5.x rebuilds it as a non-persistent ``arange`` buffer; a stored copy
must equal ``arange`` (else it would have changed the results of the original) and is then dropped.
"""
from __future__ import annotations

import glob
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
from torch import nn

__all__ = ["LoadReport", "CheckpointError", "checkpoint_problem", "check_resume_checkpoint", "load_checkpoint_state",
           "load_model_weights", "save_untrained_checkpoint"]

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


def _load_torch_file(path: str, weights_only: bool) -> Any:
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CheckpointError(f"checkpoint {path} is {problem}; point fairseq.common_eval.path / restore_file at "
                              "a checkpoint written by fairseq-train (checkpoint_best.pt, checkpoint_last.pt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except (EOFError, RuntimeError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} could not be read ({type(error).__name__}: {error}); it is "
                              "probably truncated: take another checkpoint of the run") from error


def check_resume_checkpoint(save_dir: str, restore_file: str = "checkpoint_last.pt") -> None:
    """Before fairseq resumes from ``<save_dir>/<restore_file>``: if that file exists but is not readable, raise
    naming it and the newest readable ``checkpoint*.pt`` of ``save_dir`` to resume from instead."""
    path = restore_file if os.path.isabs(restore_file) else os.path.join(save_dir, restore_file)
    if not os.path.exists(path):
        return
    problem = checkpoint_problem(path)
    if problem is None:
        return
    others = sorted((p for p in glob.glob(os.path.join(save_dir, "checkpoint*.pt"))
                     if p != path and checkpoint_problem(p) is None), key=os.path.getmtime, reverse=True)
    fix = (f"resume from the newest readable one, {others[0]}: set fairseq.checkpoint.restore_file to it"
           if others else "no other readable checkpoint*.pt is in that folder: delete the file to start over")
    raise CheckpointError(f"cannot resume: {path} is {problem}; {fix}")


def load_checkpoint_state(path: str, weights_only: bool = False) -> dict:
    """Model state dict of a checkpoint file: ``ckpt["state_dict"]`` if present, else ``ckpt["model"]``.

    Loads on the CPU.  fairseq checkpoints pickle ``argparse.Namespace`` and logging meters, so the default is a
    full unpickle (``weights_only=False``): only load files you trust.  ``weights_only=True`` refuses anything but
    tensors, containers and ``argparse.Namespace``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if weights_only:
        # argparse.Namespace is allowed process-wide by tempclr/__init__.py.  (torch's safe_globals context
        # manager would remove it again on exit, breaking fairseq's own resume later in the same process.)
        try:
            checkpoint = _load_torch_file(path, weights_only=True)
        except CheckpointError:
            raise
        except Exception as error:  # torch raises UnpicklingError or RuntimeError here
            raise ValueError(f"{path}: not loadable with weights_only=True ({error}); if you trust the file, "
                             "load it with weights_only=False") from error
    else:
        checkpoint = _load_torch_file(path, weights_only=False)
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
    report = LoadReport(dropped_position_ids=_drop_position_ids(cleaned, model_keys, source))
    report.unexpected = sorted(k for k in cleaned if k not in model_keys)
    report.missing = sorted(k for k in model_keys if k not in cleaned and not k.endswith(POSITION_IDS_SUFFIX))
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
