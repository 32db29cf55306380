"""COIN action segmentation: frame accuracy (:class:`COINActionSegmentationMetric`) and the predictors of the
fine-tuned (:class:`COINPredictor`) and zero-shot (:class:`COINZSPredictor`) models.

Per video (one per batch) the windowed per-second scores of
:class:`~tempclr.processors.coin.COINActionSegmentationAligner`'s windows are averaged back onto the video's
``T`` seconds (:func:`~tempclr.evaluators.crosstask_predictor.average_windows`), and each second gets one label
(0 = background).  ``finalize`` returns ``{"outputs": Y_pred [N], "targets": Y_true [N]}`` over the seconds of
every video in loader order (the metric's keyword arguments) and pickles ``{"Y_pred", "Y_true"}``.

Zero-shot: the step names are encoded as texts (``label_hidden [K, H]``), every second's video token as
``hidden [T, H]``; a second takes the best step ``argmax_k hidden . label_hidden_k + 1`` when that score exceeds
``lbd``, the largest similarity between two different step names, and background otherwise.  With VideoCLIP's
checkpoint no second clears ``lbd`` on COIN (fairseq issue 4940): every second is background, and the frame accuracy
equals the ground truth's background share.  The metric therefore also reports the accuracy on the seconds
that are not background and the predicted and true background shares, and warns when every second was
predicted background.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from tempclr.processors.coin import coin_window_config
from tempclr.utils.config_schema import cfg_get, setting
from tempclr.utils.registry import register

from .crosstask_predictor import average_windows
from .metric_base import Metric
from .predictor_base import Predictor, model_device_dtype

__all__ = ["COINActionSegmentationMetric", "COINPredictor", "COINZSPredictor", "frame_labels", "zero_shot_labels"]

COIN_METRIC_NAMES = ("frame_acc", "frame_acc_no_bg", "pred_bg_share", "true_bg_share", "step_acc")


def frame_labels(values: Any, name: str) -> np.ndarray:
    """``values`` as a non-empty 1-D integer array of labels (no copy when it already is one); NaN, non-integral
    or negative entries are an error naming ``name`` and the first position."""
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"COINActionSegmentationMetric: {name} must be a non-empty 1-D array of per-second labels "
                         f"(all test videos' seconds, concatenated), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            position = int(np.argmax(bad))
            raise ValueError(f"COINActionSegmentationMetric: {name} holds {int(bad.sum())} entries that are not whole "
                             f"labels (first at second {position}: {array[position].item()!r}); labels are undefined "
                             "there")
        array = array.astype(np.int64)
    elif array.dtype == np.bool_:
        array = array.astype(np.int64)
    elif not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"COINActionSegmentationMetric: {name} must hold integer labels, got dtype {array.dtype}")
    if array.min() < 0:
        position = int(np.argmax(array < 0))
        raise ValueError(f"COINActionSegmentationMetric: {name} holds a negative label ({array[position]}) at second "
                         f"{position}; labels are 0 (background) or a step id")
    return array


@register("metric")
class COINActionSegmentationMetric(Metric):
    """Frame accuracy over every second of every test video (the original's, ``1 - errors / seconds``), plus:

    * ``frame_acc_no_bg``: the same over the seconds whose true label is a step (None when there is none);
    * ``pred_bg_share`` / ``true_bg_share``: the share of seconds predicted / annotated as background (0);
    * ``step_acc`` (when the predictor gives ``step_outputs``, each second's best step with background not
      allowed): the accuracy of those over the annotated seconds, what the model knows of the steps whatever the
      background rule (None without ``step_outputs`` or annotated seconds).
    """

    def __init__(self, config: Any, metric_name: Sequence[str] = COIN_METRIC_NAMES):
        super().__init__(config, metric_name)

    def compute_metrics(self, outputs: Any, targets: Any, step_outputs: Any = None, **kwargs: Any) -> dict:
        """``outputs`` (predicted) and ``targets`` (true) ``[N]`` labels of the N seconds, in the same order;
        ``step_outputs [N]`` optionally each second's best step (1..K)."""
        predicted = frame_labels(outputs, "outputs")
        true = frame_labels(targets, "targets")
        if predicted.shape != true.shape:
            raise ValueError(f"COINActionSegmentationMetric: outputs has {predicted.size} seconds but targets "
                             f"{true.size}")
        n = len(true)
        errors = predicted != true
        background = true == 0
        n_errors = int(np.count_nonzero(errors))
        n_foreground = n - int(np.count_nonzero(background))
        foreground_errors = n_errors - int(np.count_nonzero(errors & background))
        step_acc = None
        if step_outputs is not None:
            steps = frame_labels(step_outputs, "step_outputs")
            if steps.shape != true.shape:
                raise ValueError(f"COINActionSegmentationMetric: step_outputs has {steps.size} seconds but targets "
                                 f"{true.size}")
            if n_foreground:
                step_acc = float(np.count_nonzero((steps == true) & ~background)) / n_foreground
        return {
            "frame_acc": 1.0 - float(n_errors) / n,
            "frame_acc_no_bg": (1.0 - float(foreground_errors) / n_foreground) if n_foreground else None,
            "pred_bg_share": float(n - np.count_nonzero(predicted)) / n,
            "true_bg_share": float(n - n_foreground) / n,
            "step_acc": step_acc,
        }

    def print_computed_metrics(self, metrics: Mapping[str, Any]) -> None:
        print("frame accuracy:", metrics["frame_acc"])
        no_bg = metrics.get("frame_acc_no_bg")
        print("frame accuracy without background:", "n/a (no annotated step)" if no_bg is None else no_bg)
        print("predicted background share: {:.4f} - ground-truth background share: {:.4f}".format(
            metrics["pred_bg_share"], metrics["true_bg_share"]))
        if metrics.get("step_acc") is not None:
            print("step accuracy over the annotated seconds (best step, background not allowed):",
                  metrics["step_acc"])
        if metrics["pred_bg_share"] == 1.0:
            print("WARNING: every second was predicted as background (label 0), so the frame accuracy is the "
                  "ground truth's background share and says nothing about the steps (see frame accuracy "
                  "without background)")


def _merge_windows(logits: torch.Tensor, vmasks: torch.Tensor, video_len: int, stride: int, size: int,
                   where: str) -> torch.Tensor:
    """``logits [W, Lv, C]`` of the windows -> ``[T, C]`` float32 on the CPU, each second the mean over the
    windows covering it (padding rows dropped with ``vmasks [W, Lv]``).  A NaN or inf score is an error (checked
    on each second's maximum, which NaN and +inf reach; a -inf score cannot win an argmax)."""
    rows = logits.detach().float().cpu()[vmasks.to(torch.bool).cpu()]
    merged = average_windows(rows, video_len, stride, size)
    if not torch.isfinite(merged.amax(dim=1)).all():
        raise ValueError(f"{where}: the model's scores hold NaN or inf; labels are undefined")
    return merged


def zero_shot_labels(scores: torch.Tensor, lbd: torch.Tensor) -> torch.Tensor:
    """int64 ``[T]`` labels of ``scores [T, K]`` (seconds against step names): ``argmax + 1`` (ties: the first
    step) where the best score exceeds ``lbd``, else 0 (background)."""
    best, best_label = scores.max(dim=1).values, scores.argmax(dim=1)
    return torch.where(best > lbd, best_label + 1, torch.zeros_like(best_label))


class _COINBase(Predictor):
    """Shared parts: windows from the config, the loop, the checks and :meth:`finalize`."""

    def __init__(self, config: Any):
        super().__init__(config)
        dataset = cfg_get(config, "dataset")
        if dataset is None:
            raise ValueError(f"{type(self).__name__} needs the config's 'dataset' section")
        self.max_video_len = int(setting(config, "dataset.max_video_len"))
        self.sliding_window, self.sliding_window_size = coin_window_config(dataset)
        self.step_preds: List[torch.Tensor] = []  # each video's best step per second (background not allowed)

    @staticmethod
    def _one_video(sample: Dict[str, Any]) -> Dict[str, Any]:
        vfeats = sample["vfeats"]
        if vfeats.dim() != 4 or vfeats.size(0) != 1:
            raise ValueError(f"COIN predictors take one video per batch (vfeats [1, W, Lv, D]), got "
                             f"{tuple(vfeats.shape)}; set fairseq.dataset.batch_size: 1")
        return sample

    def _video_scores(self, sample: Dict[str, Any], logits: torch.Tensor) -> torch.Tensor:
        video_len = int(sample["video_len"][0])
        where = f"COIN video {sample['video_id'][0]}"
        return _merge_windows(logits, sample["vmasks"].reshape(logits.shape[:2]), video_len, self.sliding_window,
                              self.sliding_window_size, where)

    def finalize(self, Y_pred: List[torch.Tensor], Y_true: List[torch.Tensor],
                 output_file: Optional[str] = None) -> Dict[str, Any]:
        """``{"outputs": Y_pred [N] int64, "targets": Y_true [N] int64, "step_outputs": [N] int64}`` (the seconds of
        every video, in loader order; ``step_outputs`` each second's best step, collected by :meth:`__call__`);
        with ``output_file`` ``{"Y_pred", "Y_true"}`` is also pickled under ``eval.save_path``."""
        if not Y_pred:
            raise ValueError(f"{type(self).__name__}: the evaluation loader gave no video")
        y_pred = torch.cat(Y_pred).numpy().astype(np.int64)
        y_true = torch.cat(Y_true).numpy().astype(np.int64)
        if len(y_pred) != len(y_true):
            raise ValueError(f"{type(self).__name__}: {len(y_pred)} predicted seconds but {len(y_true)} true ones")
        errors = y_pred != y_true
        print("sample error", y_pred[errors][:10], y_true[errors][:10])
        if output_file is not None:
            self.save_predictions(output_file, {"Y_pred": y_pred, "Y_true": y_true})
        result = {"outputs": y_pred, "targets": y_true}
        steps, self.step_preds = self.step_preds, []
        if steps:
            result["step_outputs"] = torch.cat(steps).numpy().astype(np.int64)
            if len(result["step_outputs"]) != len(y_true):
                raise ValueError(f"{type(self).__name__}: {len(result['step_outputs'])} best-step seconds but "
                                 f"{len(y_true)} true ones (was __call__ used outside predict_loop?)")
        return result


@register("predictor")
class COINPredictor(_COINBase):
    """The fine-tuned model (``MMFusionSeparateActionSegmentation``): each second's label is the argmax of its
    window-averaged logits ``[T, num_labels]`` (ties: the lowest label)."""

    def selection_note(self) -> Optional[str]:
        """The warning printed before evaluating a ``*best*`` checkpoint: fine-tuning (``coin_videoclip``) picks
        ``checkpoint_best.pt`` on its ``valid`` split, which for COIN is the testing subset evaluated here."""
        path = cfg_get(self.config, "fairseq.common_eval.path")
        if path is None or "best" not in os.path.basename(str(path)):
            return None
        return (f"WARNING: {path} is a 'best' checkpoint; COIN has no validation subset, so fine-tuning selected it "
                "on the testing subset evaluated here (the test split): report it only as an oracle upper bound, "
                "or evaluate a checkpoint chosen without the test split")

    @torch.no_grad()
    def predict_loop(self, model, eval_dataloader, output_file: Optional[str] = "result") -> Dict[str, Any]:
        note = self.selection_note()
        if note is not None:
            print(note, flush=True)
        self.step_preds = []
        model.eval()
        device, dtype = model_device_dtype(model)
        Y_pred: List[torch.Tensor] = []
        Y_true: List[torch.Tensor] = []
        for batch in eval_dataloader:
            self(self.to_ctx(batch, device, dtype), model, Y_pred, Y_true)
        return self.finalize(Y_pred, Y_true, output_file)

    def __call__(self, sample: Dict[str, Any], model, Y_pred: List[torch.Tensor],
                 Y_true: List[torch.Tensor]) -> None:
        sample = self._one_video(sample)
        logits = model(**sample)["logits"]
        scores = self._video_scores(sample, logits)
        true = sample["video_targets"].reshape(-1).cpu()
        if int(true.max()) >= scores.size(1):
            raise ValueError(f"COIN video {sample['video_id'][0]}: label {int(true.max())} but the model has "
                             f"{scores.size(1)} classes; set model.num_labels to the number of steps + 1")
        Y_pred.append(scores.argmax(dim=1))
        Y_true.append(true)
        self.step_preds.append(scores[:, 1:].argmax(dim=1) + 1)


@register("predictor")
class COINZSPredictor(_COINBase):
    """Zero-shot (``MMFusionSeparate``): seconds against the step names' texts, background below ``lbd`` (the
    largest similarity between two different step names)."""

    @torch.no_grad()
    def predict_loop(self, model, eval_dataloader, output_file: Optional[str] = "result") -> Dict[str, Any]:
        self.step_preds = []
        model.eval()
        device, dtype = model_device_dtype(model)
        meta = getattr(getattr(eval_dataloader, "dataset", None), "meta_processor", None)
        if meta is None or not hasattr(meta, "meta_text_labels"):
            raise ValueError("COINZSPredictor needs a loader over COINActionSegmentationMetaProcessor (it encodes "
                             "the step names of dataset.meta_processor)")
        labels = self.to_ctx(meta.meta_text_labels(cfg_get(self.config, "dataset")), device, dtype)
        label_hidden_states = model.forward_text(**labels).float().cpu()
        lbd = self.threshold(label_hidden_states)
        Y_pred: List[torch.Tensor] = []
        Y_true: List[torch.Tensor] = []
        for batch in eval_dataloader:
            self(self.to_ctx(batch, device, dtype), label_hidden_states, model, lbd, Y_pred, Y_true)
        return self.finalize(Y_pred, Y_true, output_file)

    def reshape_subsample(self, sample: Dict[str, Any]) -> Dict[str, Any]:
        """Every tensor of ``sample`` without the loader's leading batch dim of 1 (:meth:`flat_subsample`)."""
        return {key: self.flat_subsample(value) if torch.is_tensor(value) else value for key, value in sample.items()}

    def flat_subsample(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` without a leading dim of size 1 (tensors of one dim are kept)."""
        return tensor.squeeze(0) if tensor.dim() > 1 and tensor.size(0) == 1 else tensor

    @staticmethod
    def threshold(label_hidden_states: torch.Tensor) -> torch.Tensor:
        """``lbd``: the largest dot product between two different rows of ``label_hidden_states [K, H]``."""
        count = label_hidden_states.size(0)
        if count < 2:
            raise ValueError(f"COINZSPredictor: the zero-shot threshold needs at least 2 step names, got {count}")
        similarity = label_hidden_states @ label_hidden_states.t()
        return similarity.masked_select(~torch.eye(count, dtype=torch.bool)).max()

    def __call__(self, sample: Dict[str, Any], label_hidden_states: torch.Tensor, model, lbd: torch.Tensor,
                 Y_pred: List[torch.Tensor], Y_true: List[torch.Tensor]) -> None:
        sample = self._one_video(sample)
        vfeats, vmasks = sample["vfeats"][0], sample["vmasks"][0]
        hidden = model.forward_video(vfeats, vmasks, sample["caps"][0], sample["cmasks"][0],
                                     output_hidden_states=True)
        logits = hidden[:, 1:vmasks.size(1) + 1].float().cpu() @ label_hidden_states.t()
        scores = self._video_scores(sample, logits)
        Y_pred.append(zero_shot_labels(scores, lbd))
        Y_true.append(sample["video_targets"].reshape(-1).cpu())
        self.step_preds.append(scores.argmax(dim=1) + 1)
