"""Models, looked up by class name from ``config.model.model_cls`` through :mod:`tempclr.utils.registry`."""
from .mmfusion import (MMFusion, MMFusionSeparate, MMFusionSeparateActionLocalization,
                       MMFusionSeparateActionSegmentation, MMFusionSeparateFullVideoBGRetrieval, masked_mean)
from .mmptmodel import MMPTModel
from .transformermodel import MMBertForEncoder, MMBertForTokenClassification, MMBertModel, additive_attention_mask

__all__ = [
    "MMFusion", "MMFusionSeparate", "MMFusionSeparateActionLocalization", "MMFusionSeparateFullVideoBGRetrieval",
    "MMFusionSeparateActionSegmentation", "MMBertForTokenClassification",
    "masked_mean",
    "MMBertForEncoder", "MMBertModel", "additive_attention_mask", "MMPTModel",
]
