"""Metrics: CrossTask recall against a hand computation, retrieval ranks with and without ties against hand
computations and the original HowTo100M formula, JSON saving, and building a metric by class name."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from omegaconf import OmegaConf

from tempclr.evaluators import CrossTaskPredictor, Evaluator
from tempclr.evaluators.metric import CrossTaskMetric, Metric, RetrievalMetric, pessimistic_ranks


def _y(T, K, cells):
    Y = np.zeros((T, K), dtype=np.float32)
    for t, s in cells:
        Y[t, s] = 1
    return Y


def _tiny_crosstask():
    Y_true = {
        "A": {"v1": _y(4, 2, [(0, 0), (1, 0), (3, 1)]), "v2": _y(4, 2, [(2, 0)])},
        "B": {"v3": _y(3, 1, [(0, 0)])},
    }
    Y_pred = {
        "A": {"v1": _y(4, 2, [(1, 0), (2, 1)]), "v2": _y(4, 2, [(2, 0), (3, 1)]),
              "unannotated": _y(4, 2, [(0, 0), (1, 1)])},
        "B": {"v3": _y(3, 1, [(2, 0)])},
    }
    return Y_pred, Y_true


def test_crosstask_recall_by_hand(capsys):
    Y_pred, Y_true = _tiny_crosstask()
    metric = CrossTaskMetric(None)
    results = metric.compute_metrics(Y_pred, Y_true)
    # A: v1 hits step 0 (row 1), misses step 1; v2 hits step 0, step 1 has no true frame -> 2 / 3.  B: 0 / 1.
    assert results["A"] == pytest.approx(2 / 3)
    assert results["B"] == 0.0
    assert results["recall"] == pytest.approx(1 / 3)
    assert metric.best_metric(results) == pytest.approx(1 / 3)
    metric.print_computed_metrics(results)
    assert capsys.readouterr().out.splitlines() == ["Recall: 0.333", "Task A. Recall = 0.667", "Task B. Recall = 0.000"]


def test_crosstask_recall_errors():
    Y_pred, Y_true = _tiny_crosstask()
    metric = CrossTaskMetric(None)
    del Y_pred["A"]["v2"]
    with pytest.raises(ValueError, match="task A, video v2 has ground truth but no prediction"):
        metric.compute_metrics(Y_pred, Y_true)
    Y_pred, Y_true = _tiny_crosstask()
    Y_pred["B"]["v3"] = np.zeros((4, 1), np.float32)
    with pytest.raises(ValueError, match=r"video v3: prediction shape \(4, 1\)"):
        metric.compute_metrics(Y_pred, Y_true)
    Y_pred, Y_true = _tiny_crosstask()
    Y_true["B"]["v3"][:] = 0
    with pytest.raises(ValueError, match="task B has no annotated step"):
        metric.compute_metrics(Y_pred, Y_true)


def _howto100m_ranks(x):
    """The original formula: positions of the true score in each sorted row (several on ties)."""
    sx = np.sort(-x, axis=1)
    d = np.diag(-x)[:, None]
    return np.where(sx - d == 0)[1]


def test_retrieval_without_ties_by_hand_and_as_original():
    x = np.array([[3.0, 1.0, 2.0], [5.0, 4.0, 0.0], [1.0, 2.0, 0.0]])
    assert pessimistic_ranks(x).tolist() == [0, 1, 2]
    metrics = RetrievalMetric(None).compute_metrics(outputs=x, texts=["a", "b", "c"])
    assert metrics == {"R1": pytest.approx(1 / 3), "R5": 1.0, "R10": 1.0, "MR": 2.0}
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.standard_normal((40, 40))
        assert np.array_equal(pessimistic_ranks(x), _howto100m_ranks(x))


def test_retrieval_with_ties_counts_each_query_once():
    x = np.array([[1.0, 1.0, 0.0], [2.0, 2.0, 2.0], [0.0, 5.0, 5.0]])
    assert pessimistic_ranks(x).tolist() == [1, 2, 1]
    assert len(_howto100m_ranks(x)) > 3  # the original over-counts
    metrics = RetrievalMetric(None).compute_metrics(outputs=x)
    assert metrics == {"R1": 0.0, "R5": 1.0, "R10": 1.0, "MR": 2.0}
    constant = RetrievalMetric(None).compute_metrics(outputs=np.ones((12, 12)))
    assert constant["R1"] == 0.0 and constant["R10"] == 0.0 and constant["MR"] == 12.0


def test_retrieval_print_and_bad_input(capsys):
    metric = RetrievalMetric(None)
    metric.print_computed_metrics({"R1": 0.5, "R5": 0.75, "R10": 1.0, "MR": 2.0})
    assert capsys.readouterr().out.strip() == "R@1: 0.5000 - R@5: 0.7500 - R@10: 1.0000 - Median R: 2.0"
    with pytest.raises(ValueError, match="square"):
        metric.compute_metrics(outputs=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        metric.compute_metrics(outputs=np.full((2, 2), np.nan))


def test_save_metrics_writes_valid_json(tmp_path):
    metric = CrossTaskMetric(None)
    values = {"recall": np.float64(0.25), "A": np.float32(0.5), "per_video": np.array([1, 2])}
    path = tmp_path / "metrics.json"
    metric.save_metrics(str(path), values)
    assert json.loads(path.read_text()) == {"recall": 0.25, "A": 0.5, "per_video": [1, 2]}
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temp file left behind
    with pytest.raises(TypeError, match="type object cannot be written as JSON"):
        metric.save_metrics(str(path), {"recall": object()})
    assert json.loads(path.read_text())["recall"] == 0.25  # failed write kept the old file
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_built_by_class_name_through_the_evaluator():
    """The production path: ``Evaluator`` resolves ``metric:`` / ``predictor:`` through the registry."""
    config = OmegaConf.create({"metric": "CrossTaskMetric", "predictor": "CrossTaskPredictor",
                               "dataset": {"annotation_path": "unused"}})
    evaluator = Evaluator(config)
    metric = evaluator.metric
    assert type(metric) is CrossTaskMetric and type(evaluator.predictor) is CrossTaskPredictor
    assert metric.metric_names == ["recall"] and metric.config is config
    config.metric = "RetrievalMetric"
    assert Evaluator(config).metric.metric_names == ["R1", "R5", "R10", "MR"]
    config.metric = "CrossTaskMetrics"
    with pytest.raises(ValueError, match=r"^metric: CrossTaskMetrics names no metric; valid: "
                                         r"COINActionSegmentationMetric, CrossTaskMetric, "):
        Evaluator(config)
    with pytest.raises(TypeError, match="abstract"):
        Metric(config, ["x"])
    with pytest.raises(KeyError, match=r"^\"CrossTaskMetric.best_metric: 'recall' missing from the computed "
                                       r"metrics \(have \['R1'\]\)\"$"):
        metric.best_metric({"R1": 1.0})
