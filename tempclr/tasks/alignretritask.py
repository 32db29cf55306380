"""TempCLR pretraining: VideoCLIP's retrieval-augmented contrastive loss plus a
sequence-level alignment loss.

For every video of the batch, a few non-overlapping clips in temporal order give a sentence × clip distance
matrix; soft-DTW (or two-way soft-OTAM) must score the true order lower than shuffled orders:
``L = (1 - c)·L_contrastive + c·L_align``.  The shuffled orders are distinct and never the true one, drawn by
:func:`~tempclr.tasks.seqalign.negative_orders` from torch's generator (the original enumerated all ``L!``
permutations and shuffled them with Python's ``random``; both give distinct uniformly random orders, and both
give fewer than ``total_sample_size - 1`` negatives when ``L! - 1`` is smaller).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence

import torch
import torch.nn.functional as F

from tempclr.utils.config_schema import setting
from tempclr.modules.similarity import cos_sim
from tempclr.utils.registry import register

from .retritask import VideoRetriTask
from .seqalign import AlignmentSettings, negative_orders, sequence_scores


def freeze_all_but_layernorm(model: torch.nn.Module) -> int:
    """``requires_grad = False`` for every parameter whose parent module is not named ``LayerNorm``.
    Returns the number of trainable parameters left."""
    trainable = 0
    for name, parameter in model.named_parameters():
        keep = name.split(".")[-2] == "LayerNorm"
        parameter.requires_grad_(keep)
        trainable += parameter.numel() if keep else 0
    return trainable


def nonoverlapped_indices(text_start: Sequence[int], text_end: Sequence[int],
                          video_start: Sequence[int], video_end: Sequence[int]) -> List[int]:
    """Greedy in the given (sorted) order: keep clip j when it starts after the last kept clip's caption span
    and video window (ends exclusive, both starting at -1)."""
    kept, last_text_end, last_video_end = [], -1, -1
    for j in range(len(text_start)):
        if text_start[j] > last_text_end and video_start[j] > last_video_end:
            kept.append(j)
            last_text_end, last_video_end = text_end[j], video_end[j]
    return kept


def evenly_spaced(count: int, num: int) -> List[int]:
    """``floor(linspace(0, count - 1, num))``."""
    if num == 1:
        return [0]
    return [int(math.floor(i * (count - 1) / (num - 1))) for i in range(num)]


@register("task")
class AlignRetriTask(VideoRetriTask):
    """VideoRetriTask + the alignment loss.  ``self.alignment`` holds the ``alignment.*`` keys
    (:class:`~tempclr.tasks.seqalign.AlignmentSettings`): ``metric``, ``sampling_threshold`` (5),
    ``total_sample_size`` (32), ``alignment_loss_coeff`` (0.7), ``gamma`` (0.1), ``layernorm_only`` (train
    LayerNorms only)."""

    def __init__(self, config):
        super().__init__(config)
        self.alignment = AlignmentSettings.from_config(config, alignment_loss_coeff=0.7)
        self.clips_per_video = int(setting(config, "dataset.clip_per_video"))

    def build_model(self, checkpoint=None):
        model = super().build_model(checkpoint)
        if self.alignment.layernorm_only:
            freeze_all_but_layernorm(model)
        return model

    def __call__(self, model, sample: Dict[str, Any]) -> Dict[str, Any]:
        sample = self.reshape_subsample(sample)
        outputs = model(**sample)
        contrastive = self.loss_fn(**{**sample, **outputs})
        align = self.alignment_loss(outputs["pooled_video"], outputs["pooled_text"], sample["text_start"],
                                    sample["text_end"], sample["video_start"], sample["video_end"])
        coeff = self.alignment.alignment_loss_coeff
        loss = (1 - coeff) * contrastive + coeff * align
        return {"loss": loss, "contrastive_loss": contrastive.detach(), "align_loss": align.detach()}

    def alignment_loss(self, pooled_video: torch.Tensor, pooled_text: torch.Tensor, text_start: torch.Tensor,
                       text_end: torch.Tensor, video_start: torch.Tensor, video_end: torch.Tensor) -> torch.Tensor:
        """``pooled_* [Nv * clip_per_video, H]``, positions ``[Nv * clip_per_video]`` sorted per video.
        Mean over qualifying videos of ``CE(-score([true, shuffled...]), 0)``; a zero (on the inputs' device
        and dtype) when no video has ``sampling_threshold`` non-overlapping clips."""
        settings = self.alignment
        length = settings.sampling_threshold
        positions = [t.tolist() for t in (text_start, text_end, video_start, video_end)]
        rows = []
        for first in range(0, pooled_video.size(0), self.clips_per_video):
            block = slice(first, first + self.clips_per_video)
            kept = nonoverlapped_indices(*(p[block] for p in positions))
            if len(kept) >= length:
                rows.append([first + kept[i] for i in evenly_spaced(len(kept), length)])
        if not rows:
            return pooled_video.new_zeros(())
        index = torch.tensor(rows, device=pooled_video.device)                        # [n, L]
        dist = 1 - cos_sim(pooled_text[index], pooled_video[index])                     # [n, L(text), L(video)]
        identity = torch.arange(length)
        orders = [torch.cat([identity[None], negative_orders(identity, settings.total_sample_size - 1, cycle=False)])
                  for _ in rows]                                                        # per video [S, L]
        order_index = torch.stack(orders).to(dist.device)                               # [n, S, L]
        video_index = torch.arange(len(rows), device=dist.device)[:, None, None]
        keys = dist[video_index, order_index]                                           # [n, S, L, L] rows shuffled
        keys = keys.transpose(-1, -2).reshape(1, -1, length, length)                    # rows = video, cols = text
        logits = -sequence_scores(keys, settings.metric, settings.gamma).view(len(rows), -1)  # [n, S]
        target = torch.zeros(len(rows), dtype=torch.long, device=logits.device)
        if logits.dtype in (torch.float16, torch.bfloat16):  # the soft-min scores are computed in fp32 anyway
            logits = logits.float()
        return F.cross_entropy(logits, target).to(pooled_video.dtype)
