"""The base of every predictor (:class:`Predictor`) and its device helpers.

Predictors: run a model over an evaluation loader and collect what a metric needs.

The methods keep the original's names and parameters (``predict_loop(model, eval_dataloader, output_file)``,
``__call__(outputs)``, ``finalize(output_file)``, ``to_ctx(data, ctx, dtype)``), so a predictor written for MMPT
subclasses this one unchanged.  Unlike the original, the model is not moved to GPU 0: it runs where it is.

Kept apart from :mod:`tempclr.evaluators.predictor` so that the per-dataset predictor modules
(:mod:`tempclr.evaluators.coin`, :mod:`tempclr.evaluators.didemo`) can subclass it while ``predictor.py``
re-exports their classes under the original module path.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

import torch

from tempclr.utils.fileio import write_pickle_atomic
from tempclr.utils.load_config import cfg_get

__all__ = ["Predictor", "move_to", "model_device_dtype"]


def move_to(data: Any, device: torch.device, dtype: Optional[torch.dtype] = None) -> Any:
    """Tensors in (nested) dicts/lists to ``device``; floating tensors also to ``dtype`` when given."""
    if torch.is_tensor(data):
        data = data.to(device)
        return data.to(dtype) if dtype is not None and data.is_floating_point() else data
    if isinstance(data, dict):
        return {k: move_to(v, device, dtype) for k, v in data.items()}
    if isinstance(data, list):
        return [move_to(v, device, dtype) for v in data]
    return data


def model_device_dtype(model: torch.nn.Module):
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


class Predictor:
    """``predict_loop`` runs ``model`` in eval mode without gradients on the device the model is on; per batch
    it calls ``outputs = model(**batch)``, adds the batch to ``outputs`` and feeds them to :meth:`__call__`; it
    returns :meth:`finalize`'s dict (the metric's keyword arguments)."""

    def __init__(self, config: Any):
        self.config = config
        self.pred_dir = cfg_get(config, "eval.save_path")

    @torch.no_grad()
    def predict_loop(self, model, eval_dataloader, output_file: Optional[str] = None) -> Dict[str, Any]:
        model.eval()
        device, dtype = model_device_dtype(model)
        for batch in eval_dataloader:
            batch = self.to_ctx(batch, device, dtype)
            outputs = dict(model(**batch))
            outputs.update(batch)
            self(outputs)
        return self.finalize(output_file)

    def __call__(self, outputs: Dict[str, Any]) -> None:
        """Collect what the metric needs from one batch's ``outputs`` (model outputs and batch inputs)."""
        raise TypeError(f"{type(self).__name__} is a base class; use a concrete predictor")

    def finalize(self, output_file: Optional[str] = None) -> Dict[str, Any]:
        """The metric's keyword arguments; also saved under ``eval.save_path`` when ``output_file`` is given."""
        raise TypeError(f"{type(self).__name__} is a base class; use a concrete predictor")

    def to_ctx(self, data: Any, ctx: Any = None, dtype: Optional[torch.dtype] = None) -> Any:
        """Tensors of ``data`` (nested dicts/lists) on device ``ctx`` — a ``torch.device``, a device string, or
        an int (a CUDA device index, as the original's ``ctx=0``); ``None`` is the CPU — and floating tensors
        cast to ``dtype`` when given."""
        if ctx is None:
            device = torch.device("cpu")
        elif isinstance(ctx, int):
            device = torch.device("cuda", ctx)
        else:
            device = torch.device(ctx)
        return move_to(data, device, dtype)

    def save_predictions(self, output_file: Optional[str], predictions: Any, default: str = "predictions") -> str:
        """Pickle ``predictions`` to ``<eval.save_path>/<output_file>.pkl`` atomically (the extension is added
        once: ``x`` and ``x.pkl`` both give ``x.pkl``).  Returns the path."""
        if self.pred_dir is None:
            raise ValueError("config needs 'eval.save_path' (where predictions are written)")
        name = output_file or default
        name = name[: -len(".pkl")] if name.endswith(".pkl") else name
        path = name + ".pkl" if os.path.isabs(name) else os.path.join(str(self.pred_dir), name + ".pkl")
        write_pickle_atomic(path, predictions)
        return path
