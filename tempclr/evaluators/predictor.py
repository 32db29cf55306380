"""Predictors: run a model over an evaluation loader and collect what a metric needs.

The methods keep the original's names and parameters (``predict_loop(model, eval_dataloader, output_file)``,
``__call__(outputs)``, ``finalize(output_file)``, ``to_ctx(data, ctx, dtype)``), so a predictor written for MMPT
subclasses this one unchanged.  Unlike the original, the model is not moved to GPU 0: it runs where it is.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from tempclr.processors.processor import get_tokenizer
from tempclr.utils.fileio import save_npy_atomic
from tempclr.utils.load_config import cfg_get
from tempclr.utils.registry import register

from .predictor_base import Predictor, model_device_dtype, move_to

__all__ = ["Predictor", "move_to", "model_device_dtype", "parent_video_ids", "RetrievalPredictor",
           "BGRetrievalPredictor", "COINPredictor", "COINZSPredictor", "DiDeMoPredictor",
           "QAPredictor"]


# --------------------------------------------------------------------------------------------------------------
# retrieval


def parent_video_ids(video_id: Any) -> List[str]:
    """The parent video id of each item of a batch's ``video_id``.

    Accepts what :class:`~tempclr.processors.dsprocessor.DSAligner` items become after collation: a list of
    ``(vid, start, end)`` tuples (this package's collater), the transposed ``[vids, starts, ends]`` of torch's
    ``default_collate`` (the original's), or a plain list of id strings.
    """
    if isinstance(video_id, str):
        return [video_id]
    items = list(video_id)
    if items and all(isinstance(v, str) for v in items):
        return items
    if items and all(isinstance(v, (tuple, list)) and len(v) > 0 and isinstance(v[0], str) for v in items):
        return [v[0] for v in items]
    if items and isinstance(items[0], (tuple, list)) and all(isinstance(v, str) for v in items[0]):
        return list(items[0])
    raise ValueError(f"cannot read parent video ids from the batch's video_id {video_id!r}; expected (vid, start, "
                     "end) tuples or id strings")


def _as_batch_dict(data: Any) -> Dict[str, Any]:
    """A loader batch as a dict; a 5-sequence is read as ``(caps, cmasks, vfeats, vmasks, video_id)``."""
    if isinstance(data, dict):
        return data
    if isinstance(data, (list, tuple)) and len(data) == 5:
        return dict(zip(("caps", "cmasks", "vfeats", "vmasks", "video_id"), data))
    raise ValueError(f"a retrieval batch must be a dict (or caps, cmasks, vfeats, vmasks, video_id), got "
                     f"{type(data).__name__}")


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).numpy()


@register("predictor")
class RetrievalPredictor(Predictor):
    """Text-to-video retrieval scores of every caption against every clip (YouCook2 clip level).

    Per batch the model's ``pooled_video [B, H]`` and ``pooled_text [B, H]`` are collected with the parent video
    id of each clip; :meth:`finalize` returns ``outputs = text_hidden @ video_hiddenᵀ`` ``[n_captions, n_clips]``
    (row ``i``'s true clip is column ``i``), the decoded captions and the parent ids.  The model runs on the device
    its parameters are on (the original called ``.cuda()``); with ``output_file`` the scores are saved to
    ``<eval.save_path>/<output_file>.npy`` atomically, the extension added once (``retrieval.npy`` and
    ``retrieval`` both give ``retrieval.npy``; the original wrote ``retrieval.npy.npy``).

    ``full_scores`` keeps the original's layout: ``[video arrays, text arrays, video ids]``.
    """

    def __init__(self, config: Any):
        super().__init__(config)
        bert_name = cfg_get(config, "dataset.bert_name")
        if bert_name is None:
            raise ValueError(f"{type(self).__name__} needs 'dataset.bert_name' (the tokenizer that decodes captions)")
        self.tokenizer = get_tokenizer(str(bert_name), cfg_get(config, "dataset.use_fast"))

    @torch.no_grad()
    def predict_loop(self, model, eval_dataloader, output_file: Optional[str] = "retrieval.npy") -> Dict[str, Any]:
        full_scores: List[list] = []
        texts: List[str] = []
        model.eval()
        device, dtype = model_device_dtype(model)
        for data in eval_dataloader:
            data = move_to(_as_batch_dict(data), device, dtype)
            video_ids = self._video_ids(data)
            outputs = model(**data)
            outputs.update(data)
            outputs["video_id"] = video_ids
            self(outputs, full_scores)
            texts.extend(self._decode(caps) for caps in self._caption_rows(data["caps"]))
        return self.finalize(full_scores, texts, output_file)

    def __call__(self, sample: Dict[str, Any], full_scores: List[list]) -> None:
        if "pooled_video" not in sample or "pooled_text" not in sample:
            raise ValueError(f"{type(self).__name__}: the model output lacks pooled_video/pooled_text (has "
                             f"{sorted(sample)}); use MMFusionSeparate")
        if not full_scores:
            full_scores.extend([[], [], []])
        full_scores[0].append(_numpy(sample["pooled_video"]))
        full_scores[1].append(_numpy(sample["pooled_text"]))
        full_scores[2].extend(sample["video_id"])

    def finalize(self, full_scores: List[list], texts: List[str], output_file: Optional[str] = None
                 ) -> Dict[str, Any]:
        """``{"outputs": [n_captions, n_clips] float32, "texts": [n_captions] str, "video_ids": [n_clips] str}``."""
        outputs = self._scores(full_scores)
        video_ids = list(full_scores[2])
        if len(video_ids) != outputs.shape[1] or len(texts) != outputs.shape[0]:
            raise ValueError(f"{type(self).__name__}: {outputs.shape[0]} captions x {outputs.shape[1]} clips but "
                             f"{len(texts)} texts and {len(video_ids)} video ids")
        if output_file is not None:
            self.save_npy(output_file, outputs)
        return {"outputs": outputs, "texts": texts, "video_ids": video_ids}

    # ---- helpers
    def _video_ids(self, data: Dict[str, Any]) -> List[str]:
        return parent_video_ids(data["video_id"])

    def _caption_rows(self, caps: torch.Tensor) -> torch.Tensor:
        """The caption rows of a batch, ``[n, T]`` (clip level: one per item)."""
        return caps

    def _decode(self, caps: torch.Tensor) -> str:
        return self.tokenizer.decode(caps.tolist(), skip_special_tokens=True)

    def _scores(self, full_scores: List[list]) -> np.ndarray:
        if not full_scores or not full_scores[0]:
            raise ValueError(f"{type(self).__name__}: the evaluation loader gave no batch")
        video_hidden = np.concatenate(full_scores[0], axis=0)
        text_hidden = np.concatenate(full_scores[1], axis=0)
        outputs = text_hidden @ video_hidden.T
        bad = ~np.isfinite(outputs)
        if bad.any():
            raise ValueError(f"{type(self).__name__}: {int(bad.any(axis=1).sum())} caption rows of the scores hold "
                             "NaN or inf (the model's pooled outputs are not finite)")
        return outputs

    def save_npy(self, output_file: str, array: np.ndarray) -> str:
        """``array`` to ``<eval.save_path>/<output_file>.npy`` (extension added once) atomically; returns the
        path."""
        if self.pred_dir is None:
            raise ValueError("config needs 'eval.save_path' (where predictions are written)")
        name = output_file[: -len(".npy")] if output_file.endswith(".npy") else output_file
        path = name + ".npy" if os.path.isabs(name) else os.path.join(str(self.pred_dir), name + ".npy")
        save_npy_atomic(path, array)
        return path


@register("predictor")
class BGRetrievalPredictor(RetrievalPredictor):
    """Full-video retrieval with background kept: one video per batch, all its windows and all its captions.

    :meth:`finalize` returns ``outputs [all captions, all windows]`` (videos in loader order, each video's
    captions and windows consecutive), ``texts`` (every caption), ``video_ids`` (one per video) and per video
    ``text_lengths`` (its caption count) and ``video_lengths`` (its window count), what
    ``FullVideoBGRetrievalMetric.compute_metrics`` takes.  ``full_scores``: ``[video arrays, text arrays,
    video ids, text lengths, video lengths]``.
    """

    def __call__(self, sample: Dict[str, Any], full_scores: List[list]) -> None:
        if not full_scores:
            full_scores.extend([[], [], [], [], []])
        super().__call__(sample, full_scores)
        full_scores[3].append(int(sample["pooled_text"].shape[0]))
        full_scores[4].append(int(sample["pooled_video"].shape[0]))

    def finalize(self, full_scores: List[list], texts: List[str], output_file: Optional[str] = None
                 ) -> Dict[str, Any]:
        """``{"outputs": [Σ captions, Σ windows], "texts", "video_ids": [n_videos], "text_lengths": [n_videos],
        "video_lengths": [n_videos]}``."""
        outputs = self._scores(full_scores)
        video_ids, text_lengths, video_lengths = list(full_scores[2]), list(full_scores[3]), list(full_scores[4])
        if (sum(text_lengths), sum(video_lengths)) != outputs.shape or len(texts) != outputs.shape[0]:
            raise ValueError(f"{type(self).__name__}: scores {outputs.shape} but {sum(text_lengths)} captions, "
                             f"{sum(video_lengths)} windows and {len(texts)} texts")
        if output_file is not None:
            self.save_npy(output_file, outputs)
        return {"outputs": outputs, "texts": texts, "video_ids": video_ids, "text_lengths": text_lengths,
                "video_lengths": video_lengths}

    def _video_ids(self, data: Dict[str, Any]) -> List[str]:
        ids = parent_video_ids(data["video_id"])
        if len(ids) != 1 or data["caps"].dim() != 3 or data["caps"].size(0) != 1:
            raise ValueError(f"{type(self).__name__} takes one video per batch, got {len(ids)}; set "
                             "fairseq.dataset.batch_size: 1")
        return ids

    def _caption_rows(self, caps: torch.Tensor) -> torch.Tensor:
        return caps[0]


# the MSR-VTT QA, COIN and DiDeMo predictors live in their own modules; MMPT's module path keeps naming them
from .coin import COINPredictor, COINZSPredictor  # noqa: E402
from .didemo import DiDeMoPredictor  # noqa: E402
from .qa import QAPredictor  # noqa: E402
