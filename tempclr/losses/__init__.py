from .loss import BCE, CrossEntropy, Loss
from .nce import MMContraLoss

__all__ = ["Loss", "BCE", "CrossEntropy", "MMContraLoss"]
