"""Contrastive video-text loss of VideoCLIP."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .loss import Loss

from tempclr.utils.registry import register


def video_text_logits(pooled_video: torch.Tensor, pooled_text: torch.Tensor) -> torch.Tensor:
    """Raw dot products ``[N, N]``: row i = video i against every text.  No normalisation, no temperature."""
    return pooled_video @ pooled_text.t()


@register("loss")
class MMContraLoss(Loss):
    """``CE(V·Tᵀ, arange(N)) + CE(T·Vᵀ, arange(N))``: a sum over the two directions, each a mean over N.
    Negatives are the other clips in the batch."""

    def __call__(self, pooled_video: torch.Tensor, pooled_text: torch.Tensor, **kwargs) -> torch.Tensor:
        logits = video_text_logits(pooled_video, pooled_text)
        targets = torch.arange(logits.size(0), device=logits.device)
        return F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)


@register("loss")
class T2VContraLoss(Loss):
    """``CE(T·Vᵀ, arange(N))``: text-to-video only, each caption against every clip of the batch (mean over N).
    ``pooled_video`` / ``pooled_text`` ``[N, H]``, row i of each a positive pair."""

    def __call__(self, pooled_video: torch.Tensor, pooled_text: torch.Tensor, **kwargs) -> torch.Tensor:
        logits = video_text_logits(pooled_video, pooled_text).t()
        return F.cross_entropy(logits, torch.arange(logits.size(0), device=logits.device))


@register("loss")
class V2TContraLoss(Loss):
    """``CE(V·Tᵀ, arange(N))``: video-to-text only, each clip against every caption of the batch (mean over N).
    ``pooled_video`` / ``pooled_text`` ``[N, H]``, row i of each a positive pair."""

    def __call__(self, pooled_video: torch.Tensor, pooled_text: torch.Tensor, **kwargs) -> torch.Tensor:
        logits = video_text_logits(pooled_video, pooled_text)
        return F.cross_entropy(logits, torch.arange(logits.size(0), device=logits.device))
