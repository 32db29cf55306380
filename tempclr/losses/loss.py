"""Plain losses named by ``loss.loss_cls``."""
from __future__ import annotations

import torch
from torch import nn

from tempclr.utils.registry import register


class Loss:
    """A callable loss built from the run config; subclasses take keyword tensors by name."""

    def __init__(self, config=None):
        self.config = config

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} is a base class; use a concrete loss")


@register("loss")
class CrossEntropy(Loss):
    """``CE(logits [N, C], targets [N])``."""

    def __init__(self, config=None):
        super().__init__(config)
        self.loss = nn.CrossEntropyLoss()

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.loss(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


@register("loss")
class BCE(Loss):
    """``BCEWithLogits(logits [Σlen, K], targets [1, Σlen, K])``, mean over all elements (CrossTask)."""

    def __init__(self, config=None):
        super().__init__(config)
        self.loss = nn.BCEWithLogitsLoss()

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, **kwargs) -> torch.Tensor:
        targets = targets.squeeze(0) if targets.dim() == logits.dim() + 1 else targets
        return self.loss(logits, targets.to(logits.dtype))
