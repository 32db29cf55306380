"""What the demo reports share: one config evaluated for several checkpoints (the untrained model, the
demo-pretrained one, ...) exactly as ``tempclr-predict`` evaluates one, and the expected value of each metric for
random scores ("chance"), computed from the evaluated set's sizes, not simulated.

Used by ``scripts/youcook_demo_report.py``, ``scripts/crosstask_demo_report.py`` and
``scripts/demo_benchmarks_report.py``.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import torch

__all__ = ["chance", "ceiling", "evaluate", "metric_chance", "qa_chance", "save_untrained"]


def chance(metric_names: Sequence[str], n_candidates: int) -> Dict[str, float]:
    """Expected value of each recall (``R<k>``, ``DTW-R<k>``, ...) and of ``MR`` for random scores over
    ``n_candidates`` candidates: ``min(k, N) / N`` and ``(N + 1) / 2``."""
    values = {}
    for name in metric_names:
        if name == "MR":
            values[name] = (n_candidates + 1) / 2
        elif name.split("-")[-1].startswith("R") and name.split("-")[-1][1:].isdigit():
            values[name] = min(int(name.split("-")[-1][1:]), n_candidates) / n_candidates
    return values


def ceiling(query_keys: Sequence[Any], metric_names: Sequence[str]) -> Dict[str, float]:
    """Upper bound on each recall in expectation when queries with the same key (identical text) cannot be told
    apart: the mean over queries of ``min(k, g) / g``, ``g`` the number of queries sharing its key."""
    counts: Dict[Any, int] = {}
    for key in query_keys:
        counts[key] = counts.get(key, 0) + 1
    groups = np.array([counts[key] for key in query_keys], dtype=np.float64)
    values = {}
    for name in metric_names:
        last = name.split("-")[-1]
        if last.startswith("R") and last[1:].isdigit():
            values[name] = float(np.mean(np.minimum(int(last[1:]), groups) / groups))
    return values


def qa_chance(candidates: Sequence[Sequence[Any]], targets: Any) -> float:
    """Expected :class:`~tempclr.evaluators.qa.QAMetric` accuracy for random scores: a question is right when the
    best of its ``C`` scores falls in the answer's group of identical candidates (``g`` of them), probability
    ``g / C``; the mean over questions."""
    from tempclr.evaluators.qa import candidate_groups

    groups = candidate_groups(candidates)
    answers = np.asarray(targets).reshape(-1)
    sizes = (groups == groups[np.arange(len(answers)), answers][:, None]).sum(axis=1)
    return float(np.mean(sizes / groups.shape[1]))


def metric_chance(metric: Any, outputs: Mapping[str, Any], dataset: Any = None) -> Dict[str, float]:
    """Chance of every metric of ``metric`` (a Metric instance) that has an exact one, from the predictor's
    ``outputs`` (and, for COIN, the evaluated ``dataset``'s step count):

    - retrieval: recalls ``min(k, N) / N`` and median rank ``(N + 1) / 2`` over the ``N`` candidate videos;
    - QA: :func:`qa_chance`;
    - COIN: a uniformly random label per second among background and the ``K`` steps: ``1 / (K + 1)`` for the
      frame accuracies and the predicted background share, ``1 / K`` for ``step_acc`` (a random step), and the
      annotated background share itself (a property of the set);
    - ``{}`` for the others: CrossTask's recall depends on how each video's steps are decoded, DiDeMo's ranks on
      how its annotators agree, not on the set's sizes alone.
    """
    kind = type(metric).__name__
    if kind == "RetrievalMetric":
        return chance(metric.metric_names, int(np.asarray(outputs["outputs"]).shape[1]))
    if kind == "QAMetric":
        return {"acc": qa_chance(outputs["candidates"], outputs["targets"])}
    if kind == "COINActionSegmentationMetric" and dataset is not None:
        steps = len(dataset.meta_processor.text_labels)
        targets = np.asarray(outputs["targets"]).reshape(-1)
        return {"frame_acc": 1 / (steps + 1), "frame_acc_no_bg": 1 / (steps + 1), "pred_bg_share": 1 / (steps + 1),
                "true_bg_share": float(np.mean(targets == 0)), "step_acc": 1 / steps}
    return {}


def evaluate(config_path: str, checkpoints: Dict[str, str], label: Optional[str] = None) -> Dict[str, Any]:
    """Evaluate each checkpoint with one config (its data loader, predictor and metric); returns ``{"outputs":
    {model: ...}, "metrics": {model: ...}, "metric": the Metric, "dataset": the test MMDataset}``.  The predictions
    go to ``eval.save_path`` as ``<label>_<model>`` (``<model>`` without a label)."""
    from tempclr.evaluators.evaluate import build_dataloader
    from tempclr.evaluators.evaluator import Evaluator
    from tempclr.tasks.task import Task
    from tempclr.utils.load_config import load_config

    config = load_config(config_file=config_path)
    task = Task.config_task(config)
    dataloader = build_dataloader(task, config)
    model = task.build_model()
    evaluator = Evaluator(config, dataloader)
    outputs, metrics = {}, {}
    for name, path in checkpoints.items():
        task.load_checkpoint(path)
        output_file = name if label is None else f"{label}_{name}"
        outputs[name] = evaluator.predictor.predict_loop(model, dataloader, output_file=output_file)
        metrics[name] = evaluator.metric.compute_metrics(**outputs[name])
        print(f"== {'' if label is None else label + ', '}{name} model ({path})")
        evaluator.metric.print_computed_metrics(metrics[name])
    return {"outputs": outputs, "metrics": metrics, "metric": evaluator.metric, "dataset": task.test_data}


def save_untrained(config_path: str, path: str, seed: int = 0, config: Optional[Any] = None) -> str:
    """The model of ``config_path`` freshly initialised under ``torch.manual_seed(seed)``, saved at ``path``
    (so that it goes through the same checkpoint loading as a trained one); returns ``path``."""
    from tempclr.tasks.task import Task
    from tempclr.utils.checkpoint import save_untrained_checkpoint
    from tempclr.utils.load_config import load_config

    config = config if config is not None else load_config(config_file=config_path)
    torch.manual_seed(seed)
    return save_untrained_checkpoint(Task.config_task(config).build_model(), os.path.abspath(path))
