"""The base of every metric (:class:`Metric`) and the ``eval.metric_compat`` switch (:func:`metric_compat`).

Kept apart from :mod:`tempclr.evaluators.metric` so that the per-dataset metric modules
(:mod:`tempclr.evaluators.coin`, :mod:`tempclr.evaluators.didemo`) can subclass it while ``metric.py`` re-exports
their classes under the original module path.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any


from tempclr.utils.fileio import numpy_to_json, write_json_atomic
from tempclr.utils.load_config import cfg_get

__all__ = ["Metric", "metric_compat", "METRIC_COMPAT_KEY", "METRIC_COMPAT_VALUES"]


class Metric(ABC):
    """Base class: ``metric_names[0]`` is the metric used to pick the best checkpoint."""

    def __init__(self, config: Any, metric_names: Sequence[str]):
        if not metric_names:
            raise ValueError(f"{type(self).__name__}: metric_names must name at least one metric")
        self.config = config
        self.metric_names = list(metric_names)

    @abstractmethod
    def compute_metrics(self, **outputs: Any) -> dict:
        """Metrics from the predictor's outputs (keyword arguments, as the evaluator unpacks them)."""

    @abstractmethod
    def print_computed_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Print ``metrics`` in the original's format."""

    def best_metric(self, metric: Mapping[str, Any]) -> float:
        """``metric[metric_names[0]]`` as a float (``metric``: the computed metrics dict, the original's name)."""
        name = self.metric_names[0]
        if name not in metric:
            raise KeyError(f"{type(self).__name__}.best_metric: '{name}' missing from the computed metrics "
                           f"(have {sorted(metric)})")
        return float(metric[name])

    def save_metrics(self, fn: str, metrics: Mapping[str, Any]) -> None:
        """Write ``metrics`` to ``fn`` as JSON (numpy values converted), atomically via a temp file."""
        write_json_atomic(fn, dict(metrics), default=numpy_to_json)



METRIC_COMPAT_KEY = "eval.metric_compat"
METRIC_COMPAT_VALUES = ("corrected", "original")


def metric_compat(config: Any) -> str:
    """``eval.metric_compat`` of ``config``: "corrected" (absent, null or "corrected") or "original"."""
    value = cfg_get(config, METRIC_COMPAT_KEY)
    if value is None or value == "corrected":
        return "corrected"
    if value == "original":
        return "original"
    raise ValueError(f"{METRIC_COMPAT_KEY}: {value!r} is not a valid value; allowed: 'corrected' (the default, "
                     f"also when the key is absent or null) or 'original' (the original TempCLR arithmetic)")


