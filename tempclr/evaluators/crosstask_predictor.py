"""CrossTask step localisation predictor.

Per video (one per batch): the model's per-second logits ``[Σlen, K]`` come window by window from the
overlapping sliding windows of :class:`~tempclr.processors.dsprocessor.CrossTaskAligner`; they are averaged back
onto the ``T`` seconds (:func:`average_windows`), turned into ``log_softmax`` over the K steps, and the CrossTask
DP (:func:`~tempclr.evaluators.dp.dp`) places every step at exactly one second, in task order, minimising
``-log p``.  ``Y_pred[task][vid]`` is that placement, ``Y_true[task][vid]`` the annotation
(:func:`read_assignment`); :meth:`CrossTaskPredictor.finalize` returns them as ``{"outputs": Y_pred, "targets":
Y_true}`` (the keyword arguments of ``CrossTaskMetric.compute_metrics``) and pickles ``{"Y_pred", "Y_true"}``.
The methods keep the original's parameters: ``predict_loop(model, eval_dataloader, output_file="result")``,
``__call__(sample, model, Y_pred, Y_true)``, ``finalize(Y_pred, Y_true, output_file=None)``,
``_read_assignment(T, K, path)``.

Changes from MMPT: the window averaging is one ``index_add_`` instead of a Python loop over windows, the work is
on the CPU whatever device the model runs on (MMPT used ``.to(0)``), and a missing annotation or a batch of more
than one video is an error instead of being skipped or misread.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

import numpy as np
import torch

from tempclr.processors.crosstask_release import read_assignment
from tempclr.processors.dsprocessor import CROSSTASK_WINDOW, sliding_windows
from tempclr.utils.load_config import cfg_get
from tempclr.utils.registry import register

from .dp import dp
from .predictor_base import Predictor, model_device_dtype

__all__ = ["CrossTaskPredictor", "average_windows", "window_rows"]


def window_rows(video_len: int, stride: int, size: int) -> torch.Tensor:
    """int64 ``[Σlen]``: the second each row of the windowed ``logits [Σlen, K]`` belongs to."""
    starts, lengths = sliding_windows(video_len, stride, size)
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return torch.from_numpy(np.repeat(starts, lengths) + offsets)


def average_windows(logits: torch.Tensor, video_len: int, stride: int = 16, size: int = 32) -> torch.Tensor:
    """Average the windowed ``logits [Σlen, K]`` per second → ``[T, K]`` (float32, on ``logits``' device).

    Row ``r`` belongs to second ``window_rows(...)[r]``; each second's rows (one per window covering it) are
    summed with ``index_add_`` and divided by their count.  Every second is covered by at least one window.
    """
    rows = window_rows(video_len, stride, size).to(logits.device)
    if logits.dim() != 2 or logits.size(0) != rows.numel():
        raise ValueError(f"logits have shape {tuple(logits.shape)} but a {video_len}-second video with windows of "
                         f"{size} s every {stride} s has {rows.numel()} window rows ([Σlen, K] expected); "
                         "are dataset.sliding_window / sliding_window_size those the data was built with?")
    logits = logits.float()
    sums = torch.zeros(video_len, logits.size(1), dtype=logits.dtype, device=logits.device)
    sums.index_add_(0, rows, logits)
    counts = torch.bincount(rows, minlength=video_len).to(logits.dtype)
    return sums / counts.unsqueeze(1)


@register("predictor")
class CrossTaskPredictor(Predictor):
    """Collects ``Y_pred`` / ``Y_true`` (``{task: {vid: [T, K] array}}``) over the test videos.

    Reads ``dataset.annotation_path``, ``dataset.sliding_window`` (16), ``dataset.sliding_window_size`` (32) and
    ``eval.save_path`` (where :meth:`finalize` pickles ``{"Y_pred", "Y_true"}`` as ``<output_file>.pkl``).
    """

    def __init__(self, config: Any):
        super().__init__(config)
        self.annotation_path = cfg_get(config, "dataset.annotation_path")
        if self.annotation_path is None:
            raise ValueError("CrossTaskPredictor needs 'dataset.annotation_path' (the release's annotations/ folder)")
        self.sliding_window = int(cfg_get(config, "dataset.sliding_window", CROSSTASK_WINDOW[0]))
        self.sliding_window_size = int(cfg_get(config, "dataset.sliding_window_size", CROSSTASK_WINDOW[1]))

    @torch.no_grad()
    def predict_loop(self, model, eval_dataloader, output_file: Optional[str] = "result") -> Dict[str, Any]:
        """Every video of ``eval_dataloader`` (one per batch) → ``finalize(Y_pred, Y_true, output_file)``."""
        model.eval()
        device, dtype = model_device_dtype(model)
        Y_pred: Dict[str, Dict[str, np.ndarray]] = {}
        Y_true: Dict[str, Dict[str, np.ndarray]] = {}
        for batch in eval_dataloader:
            self(self.to_ctx(batch, device, dtype), model, Y_pred, Y_true)
        return self.finalize(Y_pred, Y_true, output_file)

    def __call__(self, sample: Dict[str, Any], model, Y_pred: Dict[str, Dict[str, np.ndarray]],
                 Y_true: Dict[str, Dict[str, np.ndarray]]) -> None:
        """Predict one video and add its placement to ``Y_pred`` and its annotation to ``Y_true``."""
        if sample["caps"].size(0) != 1:
            raise ValueError(f"CrossTaskPredictor takes one video per batch, got {sample['caps'].size(0)}; "
                             "set fairseq.dataset.batch_size: 1")
        task, vid = str(sample["task"][0]), str(sample["video_id"][0])
        video_len = int(sample["video_len"][0])
        logits = model(**sample)["logits"].detach().cpu()
        y_pred = self.assign_steps(logits, video_len, f"task {task}, video {vid}")
        Y_pred.setdefault(task, {})[vid] = y_pred
        Y_true.setdefault(task, {})[vid] = self.ground_truth(task, vid, video_len, y_pred.shape[1])

    def assign_steps(self, logits: torch.Tensor, video_len: int, where: str = "") -> np.ndarray:
        """Windowed ``logits [Σlen, K]`` → step placement ``Y [T, K]`` (float32, one 1 per step column)."""
        averaged = average_windows(logits, video_len, self.sliding_window, self.sliding_window_size)
        costs = -torch.log_softmax(averaged, dim=1).numpy()
        y_pred = np.zeros(costs.shape, dtype=np.float32)
        try:
            dp(y_pred, costs)
        except ValueError as error:
            raise ValueError(f"CrossTask DP failed for {where}: {error}") from error
        return y_pred

    def ground_truth(self, task: str, vid: str, video_len: int, n_steps: int) -> np.ndarray:
        path = os.path.join(str(self.annotation_path), f"{task}_{vid}.csv")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"annotation {path} (dataset.annotation_path) of a test video is missing; "
                                    "the meta processor only lists annotated videos, so the release changed")
        return self._read_assignment(video_len, n_steps, path)

    def _read_assignment(self, T: int, K: int, path: str) -> np.ndarray:
        """uint8 ``[T, K]`` ground truth from one annotation csv (the original's method name)."""
        return read_assignment(T, K, path)

    def finalize(self, Y_pred: Dict[str, Dict[str, np.ndarray]], Y_true: Dict[str, Dict[str, np.ndarray]],
                 output_file: Optional[str] = None) -> Dict[str, Any]:
        """``{"outputs": Y_pred, "targets": Y_true}``; with ``output_file``, ``{"Y_pred", "Y_true"}`` is also
        pickled to ``<eval.save_path>/<output_file>.pkl``."""
        if output_file is not None:
            self.save_predictions(output_file, {"Y_pred": Y_pred, "Y_true": Y_true})
        return {"outputs": Y_pred, "targets": Y_true}
