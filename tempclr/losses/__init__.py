from .loss import BCE, CrossEntropy, Loss
from .nce import MMContraLoss, T2VContraLoss, V2TContraLoss

__all__ = ["Loss", "BCE", "CrossEntropy", "MMContraLoss", "T2VContraLoss", "V2TContraLoss"]
