"""One registry for every class a run config names.

A YAML config names its parts by class name (``task: AlignRetriTask``, ``model.model_cls: MMFusionSeparate``,
``dataset.aligner: VideoRetriAligner``, ``metric: CrossTaskMetric``, ...).  Each such class is registered under
its *kind* with the :func:`register` decorator where it is defined; :func:`lookup` turns ``(kind, name)`` into the
class, importing the package that defines that kind first, and fails with the config key, the name and every valid
name of that kind.  Helpers and base classes that happen to live in the same module are not registered, so a
config cannot name them by accident.

Kinds and the config keys that name them (:data:`CONFIG_KEYS`)::

    task             task
    model            model.model_cls
    loss             loss.loss_cls
    meta_processor   dataset.meta_processor
    video_processor  dataset.video_processor
    text_processor   dataset.text_processor
    aligner          dataset.aligner
    metric           metric
    predictor        predictor
    vectorpool       vectorpool_cls
    retriever        retriever_cls
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict, Type, TypeVar

__all__ = ["register", "lookup", "registered", "CONFIG_KEYS", "KIND_PACKAGES"]

T = TypeVar("T", bound=type)

# the package whose import registers every class of a kind
KIND_PACKAGES: Dict[str, str] = {
    "task": "tempclr.tasks",
    "model": "tempclr.models",
    "loss": "tempclr.losses",
    "meta_processor": "tempclr.processors",
    "video_processor": "tempclr.processors",
    "text_processor": "tempclr.processors",
    "aligner": "tempclr.processors",
    "metric": "tempclr.evaluators",
    "predictor": "tempclr.evaluators",
    "vectorpool": "tempclr.modules.vectorpool",
    "retriever": "tempclr.modules.retri",
}

# the config key (dotted) that names a class of each kind
CONFIG_KEYS: Dict[str, str] = {
    "task": "task",
    "model": "model.model_cls",
    "loss": "loss.loss_cls",
    "meta_processor": "dataset.meta_processor",
    "video_processor": "dataset.video_processor",
    "text_processor": "dataset.text_processor",
    "aligner": "dataset.aligner",
    "metric": "metric",
    "predictor": "predictor",
    "vectorpool": "vectorpool_cls",
    "retriever": "retriever_cls",
}

_REGISTRY: Dict[str, Dict[str, type]] = {kind: {} for kind in KIND_PACKAGES}


def _check_kind(kind: str) -> None:
    if kind not in _REGISTRY:
        raise ValueError(f"unknown registry kind {kind!r}; kinds: {', '.join(sorted(_REGISTRY))}")


def register(kind: str, name: str | None = None) -> Callable[[T], T]:
    """Class decorator: make the class nameable in configs as ``kind`` (under its own name unless ``name``).

    Registering a second, different class under a taken name is an error (two modules would otherwise
    silently shadow each other); re-registering the same class (a module imported twice) is allowed."""
    _check_kind(kind)

    def decorate(cls: T) -> T:
        key = name or cls.__name__
        existing = _REGISTRY[kind].get(key)
        if existing is not None and (existing.__module__, existing.__qualname__) != (cls.__module__,
                                                                                      cls.__qualname__):
            raise ValueError(f"{kind} {key!r} is registered twice: {existing.__module__}.{existing.__qualname__} "
                             f"and {cls.__module__}.{cls.__qualname__}")
        _REGISTRY[kind][key] = cls
        return cls

    return decorate


def registered(kind: str) -> Dict[str, type]:
    """``{name: class}`` of every class of ``kind`` (importing the package that defines them)."""
    _check_kind(kind)
    importlib.import_module(KIND_PACKAGES[kind])
    return dict(_REGISTRY[kind])


def lookup(kind: str, name: object, key: str | None = None) -> Type:
    """The class of ``kind`` called ``name``.

    ``key`` is the config key that held the name (default: the kind's usual key, :data:`CONFIG_KEYS`); an unknown
    name raises ``ValueError`` naming the key, the name and the valid names, e.g.
    ``dataset.aligner: DSAlignr names no aligner; valid: CrossTaskAligner, ...``."""
    classes = registered(kind)
    cls = classes.get(str(name))
    if cls is None:
        key = key or CONFIG_KEYS[kind]
        valid = ", ".join(sorted(classes)) or "(none)"
        raise ValueError(f"{key}: {name} names no {kind.replace('_', ' ')}; valid: {valid}")
    return cls
