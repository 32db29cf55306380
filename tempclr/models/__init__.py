"""Models, looked up by class name from ``config.model.model_cls`` (see :func:`get_model_class`)."""
from .mmfusion import MMFusion, MMFusionSeparate, MMFusionSeparateActionLocalization, masked_mean
from .transformermodel import MMBertForEncoder, MMBertModel, additive_attention_mask

__all__ = [
    "MMFusion", "MMFusionSeparate", "MMFusionSeparateActionLocalization", "masked_mean",
    "MMBertForEncoder", "MMBertModel", "additive_attention_mask", "MODEL_CLASSES", "get_model_class",
]

# classes a run config may name in model.model_cls
MODEL_CLASSES = {cls.__name__: cls for cls in (MMFusionSeparate, MMFusionSeparateActionLocalization)}


def get_model_class(name: str) -> type:
    """The model class called ``name`` (``config.model.model_cls``); unknown names list the choices."""
    if name not in MODEL_CLASSES:
        raise ValueError(f"unknown model.model_cls {name!r}; available: {sorted(MODEL_CLASSES)}")
    return MODEL_CLASSES[name]
