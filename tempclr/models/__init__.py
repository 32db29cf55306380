"""Models, looked up by class name from ``config.model.model_cls`` through :mod:`tempclr.utils.registry`."""
from .mmfusion import (MMFusion, MMFusionSeparate, MMFusionSeparateActionLocalization,
                       MMFusionSeparateFullVideoBGRetrieval, masked_mean)
from .mmptmodel import MMPTModel
from .transformermodel import MMBertForEncoder, MMBertModel, additive_attention_mask

__all__ = [
    "MMFusion", "MMFusionSeparate", "MMFusionSeparateActionLocalization", "MMFusionSeparateFullVideoBGRetrieval",
    "masked_mean",
    "MMBertForEncoder", "MMBertModel", "additive_attention_mask", "MMPTModel",
]
