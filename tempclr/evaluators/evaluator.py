"""``Evaluator``: predictor + metric, both named by class in the config (``predictor:``, ``metric:``).

Same methods as the original: ``evaluate(model, eval_dataloader=None, output_file="merged")`` predicts and scores;
``__call__()`` re-scores the predictions already saved under ``eval.save_path`` (``*_merged`` first, then
``merged``) and returns ``{"results": ..., "metric": ...}`` for ``merged``.  Where the original printed
``[missing]`` and returned ``{}`` when no saved prediction existed, this raises ``FileNotFoundError`` naming the
folder.
"""
from __future__ import annotations

import glob
import os
from typing import Any, Dict, Optional

import numpy as np

from tempclr.utils.load_config import cfg_get
from tempclr.utils.registry import lookup
from tempclr.utils.safe_pickle import load_pickle


class Evaluator:
    def __init__(self, config: Any, eval_dataloader=None):
        for key in ("metric", "predictor"):
            if cfg_get(config, key) is None:
                raise ValueError(f"an evaluation config needs '{key}:' (e.g. CrossTaskMetric / CrossTaskPredictor)")
        self.config = config
        self.metric = lookup("metric", config.metric)(config)
        self.predictor = lookup("predictor", config.predictor)(config)
        self.eval_dataloader = eval_dataloader

    def __call__(self) -> Dict[str, Any]:
        """Score the saved predictions: print the metrics of every ``*_merged`` file, return those of ``merged``."""
        folder = self.predictor.pred_dir
        if folder is None:
            raise ValueError("re-scoring saved predictions needs 'eval.save_path' in the config")
        for path in sorted(glob.glob(os.path.join(str(folder), "*_merged.*"))):
            self.metric.print_computed_metrics(self.metric.compute_metrics(**load_predictions(path)))
        merged = [p for p in (os.path.join(str(folder), "merged" + ext) for ext in (".pkl", ".npy"))
                  if os.path.isfile(p)]
        if not merged:
            raise FileNotFoundError(f"no saved predictions merged.pkl / merged.npy in {folder} (eval.save_path); "
                                    "run the evaluation first (locallaunch.py CONFIG --jobtype local_predict)")
        return {"results": self.metric.compute_metrics(**load_predictions(merged[0])), "metric": self.metric}

    def evaluate(self, model, eval_dataloader=None, output_file: Optional[str] = "merged") -> Dict[str, Any]:
        """``metric.compute_metrics(**predictor.predict_loop(model, eval_dataloader, output_file))``; the loader
        defaults to the one given to the constructor."""
        if eval_dataloader is None:
            eval_dataloader = self.eval_dataloader
        if eval_dataloader is None:
            raise ValueError("Evaluator.evaluate needs an eval_dataloader (here or in the constructor)")
        outputs = self.predictor.predict_loop(model, eval_dataloader, output_file)
        return self.metric.compute_metrics(**outputs)


def load_predictions(path: str) -> Dict[str, Any]:
    """A saved prediction file as the metric's keyword arguments: ``.npy`` → ``{"outputs": array}``; ``.pkl`` →
    its dict (CrossTask's ``{"Y_pred", "Y_true"}`` becomes ``{"outputs", "targets"}``)."""
    if path.endswith(".npy"):
        return {"outputs": np.load(path)}
    if path.endswith(".pkl"):
        saved = load_pickle(path)
        if not isinstance(saved, dict):
            raise ValueError(f"{path}: saved predictions must be a dict, got {type(saved).__name__}")
        if set(saved) == {"Y_pred", "Y_true"}:
            return {"outputs": saved["Y_pred"], "targets": saved["Y_true"]}
        return dict(saved)
    raise ValueError(f"{path}: saved predictions are .npy or .pkl files")
