"""Predictors: run a model over an evaluation loader and collect what a metric needs."""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

import torch

from tempclr.utils.fileio import write_pickle_atomic
from tempclr.utils.load_config import cfg_get


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
    """``predict_loop`` runs ``model`` in eval mode without gradients on the device the model is on, feeds
    each batch to :meth:`__call__` and returns :meth:`finalize`'s dict (the metric's keyword arguments)."""

    def __init__(self, config):
        self.config = config
        self.pred_dir = cfg_get(config, "eval.save_path")

    @torch.no_grad()
    def predict_loop(self, model, eval_dataloader, output_file: Optional[str] = None) -> Dict[str, Any]:
        model.eval()
        device, dtype = model_device_dtype(model)
        for batch in eval_dataloader:
            self(move_to(batch, device, dtype), model)
        return self.finalize(output_file)

    def __call__(self, sample: Dict[str, Any], model) -> None:
        raise TypeError(f"{type(self).__name__} is a base class; use a concrete predictor")

    def finalize(self, output_file: Optional[str]) -> Dict[str, Any]:
        raise TypeError(f"{type(self).__name__} is a base class; use a concrete predictor")

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
