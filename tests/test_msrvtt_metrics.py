"""MSR-VTT metrics: ``RetrievalMetric`` (one rank per query; ``eval.metric_compat: original`` the original's
tied-position counting) and ``QAMetric`` (repeated answer texts, pessimistic ties; compat: the original argmax),
each against a plain-loop computation written here, and the compat switches against the original's arithmetic
(tempclr/testing/original.py) on random inputs with ties, NaN and empty rows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tempclr.evaluators.metric import QAMetric, RetrievalMetric
from tempclr.testing.original import original_qa_accuracy, original_retrieval_metrics

ORIGINAL = {"eval": {"metric_compat": "original"}}


def tied_scores(rng, n, m=None, levels=4):
    """Scores with many exact ties: integers 0..levels-1 as float32."""
    return rng.integers(0, levels, size=(n, m or n)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ retrieval


def loop_retrieval(scores):
    """Independent: rank of query i = how many other candidates score >= its true one; recalls and median."""
    ranks = []
    for i, row in enumerate(scores.tolist()):
        ranks.append(sum(1 for j, value in enumerate(row) if j != i and value >= row[i]))
    ordered = sorted(ranks)
    half = len(ordered) // 2
    median = ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2
    return {"R1": sum(r < 1 for r in ranks) / len(ranks), "R5": sum(r < 5 for r in ranks) / len(ranks),
            "R10": sum(r < 10 for r in ranks) / len(ranks), "MR": median + 1}


@pytest.mark.parametrize("seed", range(6))
def test_retrieval_ranks_match_a_plain_loop_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    scores = tied_scores(rng, n, levels=int(rng.integers(1, 6))) if seed % 2 == 0 else rng.standard_normal((n, n))
    assert RetrievalMetric(None).compute_metrics(scores) == pytest.approx(loop_retrieval(scores), abs=0)


def test_retrieval_constant_scorer_is_last_and_nan_or_empty_is_an_error():
    assert RetrievalMetric(None).compute_metrics(np.ones((5, 5)))["R1"] == 0.0
    with pytest.raises(ValueError, match="contain NaN"):
        RetrievalMetric(None).compute_metrics(np.array([[1.0, np.nan], [0.0, 1.0]]))
    for metric in (RetrievalMetric(None), RetrievalMetric(ORIGINAL)):
        with pytest.raises(ValueError, match="non-empty"):
            metric.compute_metrics(np.zeros((0, 0), dtype=np.float32))


@pytest.mark.parametrize("seed", range(8))
def test_retrieval_compat_reproduces_the_original_arithmetic(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 60))
    scores = tied_scores(rng, n, levels=int(rng.integers(1, 5)))
    if seed >= 4:   # NaN off the diagonal, a NaN true score and an infinite true score: rows the original skips
        scores[rng.integers(n), rng.integers(n)] = np.nan
        scores[0, 0] = np.nan
        scores[1, 1] = np.inf
    with np.errstate(invalid="ignore"):  # the original subtracts inf - inf
        expected = original_retrieval_metrics(scores)
    got = RetrievalMetric(ORIGINAL).compute_metrics(scores)
    assert got == {key: float(value) for key, value in expected.items()}
    if seed < 4:   # the corrected ranks differ exactly where a true score ties
        assert RetrievalMetric(None).compute_metrics(scores)["R1"] <= got["R1"]


def test_retrieval_compat_counts_a_tie_as_the_original_did_and_refuses_nothing_to_count():
    scores = np.array([[1, 1, 0], [0, 2, 1], [0, 0, 3]], dtype=np.float32)   # query 0 tied with one other clip
    assert RetrievalMetric(ORIGINAL).compute_metrics(scores)["R1"] == 3 / 4     # entries 0, 1 (query 0), 0, 0
    assert RetrievalMetric(None).compute_metrics(scores)["R1"] == 2 / 3
    with pytest.raises(ValueError, match="no query has a finite true score"):
        RetrievalMetric(ORIGINAL).compute_metrics(np.full((2, 2), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match=r"square \[N, N\] score matrix"):
        RetrievalMetric(ORIGINAL).compute_metrics(np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="float32 or float64"):
        RetrievalMetric(ORIGINAL).compute_metrics(np.eye(3, dtype=np.int64))


# ------------------------------------------------------------------------------------------------ QA


def loop_qa(scores, targets, candidates):
    """Independent: right when the answer text's best score beats every other text's best score."""
    right = 0
    for row, answer, texts in zip(scores.tolist(), targets.tolist(), candidates):
        best_answer = max(v for v, t in zip(row, texts) if t == texts[answer])
        others = [v for v, t in zip(row, texts) if t != texts[answer]]
        right += int(not others or best_answer > max(others))
    return right / len(targets)


def random_qa(rng, n, repeat=True):
    words = ["a", "b", "c", "NA", "d e"]
    candidates = [[words[int(k)] for k in rng.integers(0, len(words) if repeat else 1, size=5)] for _ in range(n)]
    if not repeat:
        candidates = [list(words) for _ in range(n)]
    scores = tied_scores(rng, n, 5, levels=3)
    targets = rng.integers(0, 5, size=n)
    # identical texts are identical model inputs: they score the same
    for row, texts in zip(scores, candidates):
        for c, text in enumerate(texts):
            row[c] = row[texts.index(text)]
    return scores, targets, candidates


@pytest.mark.parametrize("seed", range(6))
def test_qa_accuracy_matches_a_plain_loop_with_repeated_texts_and_ties(seed):
    rng = np.random.default_rng(seed)
    scores, targets, candidates = random_qa(rng, int(rng.integers(1, 50)), repeat=seed % 2 == 0)
    got = QAMetric(None).compute_metrics(scores, targets, candidates=candidates)
    assert got == {"acc": loop_qa(scores, targets, candidates)}
    # without candidate texts every position is its own candidate
    assert QAMetric(None).compute_metrics(scores, targets)["acc"] == loop_qa(scores, targets, [list(range(5))] *
                                                                             len(targets))


def test_qa_answer_repeated_earlier_is_right_and_the_original_scored_it_wrong():
    scores = np.array([[0.1, 0.9, 0.9, 0.2, 0.3]], dtype=np.float32)
    candidates = [["x", "pour milk", "pour milk", "NA", "y"]]
    assert QAMetric(None).compute_metrics(scores, [2], candidates=candidates) == {"acc": 1.0}
    assert QAMetric(ORIGINAL).compute_metrics(scores, [2], candidates=candidates) == {"acc": 0.0}
    # a tie between different texts is wrong (pessimistic); the original's first-max happens to pick the answer
    tie = np.array([[0.5, 0.5, 0.0, 0.0, 0.0]], dtype=np.float32)
    assert QAMetric(None).compute_metrics(tie, [0]) == {"acc": 0.0}
    assert QAMetric(ORIGINAL).compute_metrics(tie, [0]) == {"acc": 1.0}
    # the original predictor's chosen indices are accepted too
    assert QAMetric(None).compute_metrics(np.array([1, 0]), [2, 0], candidates=candidates * 2) == {"acc": 1.0}
    assert QAMetric(ORIGINAL).compute_metrics(np.array([1, 0]), [2, 0]) == {"acc": 0.5}


def test_qa_nan_empty_and_bad_targets_are_errors():
    with pytest.raises(ValueError, match=r"hold NaN \(first: row 1\)"):
        QAMetric(None).compute_metrics(np.array([[0.0] * 5, [np.nan] + [0.0] * 4]), [0, 0])
    with pytest.raises(ValueError, match="N >= 1 questions"):
        QAMetric(None).compute_metrics(np.zeros((0, 5)), [])
    with pytest.raises(ValueError, match="no candidate column"):
        QAMetric(None).compute_metrics(np.zeros((2, 0)), [0, 0])
    with pytest.raises(ValueError, match=r"answer indices in 0..4"):
        QAMetric(None).compute_metrics(np.zeros((1, 5)), [5])
    with pytest.raises(ValueError, match=r"expected \[2\]"):
        QAMetric(None).compute_metrics(np.zeros((2, 5)), [0])
    with pytest.raises(ValueError, match="candidates is"):
        QAMetric(None).compute_metrics(np.zeros((2, 5)), [0, 0], candidates=[["a"] * 5])
    with pytest.raises(ValueError, match="not a valid value"):
        QAMetric({"eval": {"metric_compat": "orignal"}})


@pytest.mark.parametrize("seed", range(5))
def test_qa_compat_reproduces_the_original_predictor_and_metric(seed):
    rng = np.random.default_rng(200 + seed)
    n, hidden = int(rng.integers(1, 40)), 4
    video = torch.from_numpy(rng.integers(-2, 3, size=(n, hidden)).astype(np.float32))
    text = torch.from_numpy(rng.integers(-2, 3, size=(n, 5, hidden)).astype(np.float32))
    answers = rng.integers(0, 5, size=n)
    expected = original_qa_accuracy(video.unsqueeze(1).repeat(1, 5, 1), text, answers)
    scores = torch.bmm(text, video.unsqueeze(-1)).squeeze(-1).numpy()      # what QAPredictor returns
    assert QAMetric(ORIGINAL).compute_metrics(scores, answers) == {"acc": expected}
