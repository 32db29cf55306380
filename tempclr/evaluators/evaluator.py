"""``Evaluator``: predictor + metric, both named by class in the config (``predictor:``, ``metric:``)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from tempclr.utils.load_config import cfg_get
from tempclr.utils.registry import lookup


class Evaluator:
    def __init__(self, config, eval_dataloader=None):
        for key in ("metric", "predictor"):
            if cfg_get(config, key) is None:
                raise ValueError(f"an evaluation config needs '{key}:' (e.g. CrossTaskMetric / CrossTaskPredictor)")
        self.config = config
        self.metric = lookup("metric", config.metric)(config)
        self.predictor = lookup("predictor", config.predictor)(config)
        self.eval_dataloader = eval_dataloader

    def __call__(self, model, output_file: Optional[str] = None) -> Dict[str, Any]:
        return self.evaluate(model, self.eval_dataloader, output_file)

    def evaluate(self, model, eval_dataloader, output_file: Optional[str] = None) -> Dict[str, Any]:
        outputs = self.predictor.predict_loop(model, eval_dataloader, output_file)
        results = self.metric.compute_metrics(**outputs)
        return results
