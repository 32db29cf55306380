"""The ``alignment:`` section of a run config: TempCLR's sequence-alignment loss settings, read once for both
training tasks (pretraining, CrossTask fine-tuning).  Key types and defaults are in
:mod:`tempclr.utils.config_schema`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config_schema import DEFAULTS, cfg_get

__all__ = ["AlignmentSettings", "METRICS"]

METRICS = ("dtw", "otam")


def _default(name: str) -> Any:
    return DEFAULTS[f"alignment.{name}"]


@dataclass(frozen=True)
class AlignmentSettings:
    """The ``alignment:`` keys (names as in the YAML).  Defaults are the schema's (the original's values);
    ``alignment_loss_coeff`` defaults to 0.7 for pretraining and 0.12 for CrossTask fine-tuning (each task passes
    its own)."""

    metric: str = _default("metric")
    total_sample_size: int = _default("total_sample_size")
    alignment_loss_coeff: float = _default("alignment_loss_coeff")
    gamma: float = _default("gamma")
    sampling_threshold: int = _default("sampling_threshold")
    video_sampling_multiplier: int = _default("video_sampling_multiplier")
    inner_shuffling: bool = _default("inner_shuffling")
    layernorm_only: bool = _default("layernorm_only")

    @classmethod
    def from_config(cls, config: Any, **task_defaults: Any) -> "AlignmentSettings":
        """Read ``config.alignment``; ``task_defaults`` override the class defaults for keys the config omits."""
        defaults = {**{f: getattr(cls, f) for f in cls.__dataclass_fields__}, **task_defaults}
        values = {}
        for name, default in defaults.items():
            value = cfg_get(config, f"alignment.{name}", default)
            values[name] = type(default)(value) if not isinstance(default, bool) else bool(value)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"alignment.metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if self.total_sample_size < 2:
            raise ValueError(f"alignment.total_sample_size={self.total_sample_size}: need the positive and at "
                             "least one negative")
        if not self.gamma > 0:
            raise ValueError(f"alignment.gamma={self.gamma}: the soft-min temperature must be > 0")
        if self.sampling_threshold < 2:
            raise ValueError(f"alignment.sampling_threshold={self.sampling_threshold}: a sequence needs at least "
                             "2 clips to have a shuffled order")

