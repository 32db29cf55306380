"""MSR-VTT metrics at their real test-set sizes: corrected vs ``eval.metric_compat: original`` vs the original's
arithmetic, in one run.

* retrieval (``RetrievalMetric``): the JSFusion 1k-A test, scores [1000, 1000] float32; two inputs (seeded):
  standard normal (no ties) and the same rounded to one decimal (many ties, where the original counts a query
  ``t + 1`` times).  Timed: corrected (one pessimistic rank per query), compat (the tied-position entries counted
  without sorting) and the original's formula (``tempclr.testing.original.original_retrieval_metrics``: sort
  every row, subtract, ``np.where``), whose metrics must equal compat's (checked).
* QA (``QAMetric``): ``MSR_MC_test.csv``, 2,990 questions x 5 candidates; scores float32 standard normal,
  candidate texts drawn from 4,000 sentences with one answer text repeated per 50 questions.  Timed: corrected
  (grouping repeated texts, included), compat, and the original (``argmax`` then sklearn's ``accuracy_score`` when
  sklearn is installed, as MMPT's ``QAMetric``; and the plain port of ``original_qa_accuracy``'s accuracy loop).

    .venv/bin/python benchmarks/bench_msrvtt_metrics.py [--rounds 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from timing import best_time

from tempclr.evaluators.metric import QAMetric, RetrievalMetric
from tempclr.testing.original import original_retrieval_metrics

ORIGINAL = {"eval": {"metric_compat": "original"}}
N_RETRIEVAL, N_QA, N_CANDIDATES = 1000, 2990, 5


def qa_inputs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    pool = [f"sentence number {k}" for k in range(4000)]
    candidates = [[pool[int(k)] for k in rng.integers(0, len(pool), N_CANDIDATES)] for _ in range(N_QA)]
    targets = rng.integers(0, N_CANDIDATES, N_QA)
    for q in range(0, N_QA, 50):          # the answer's text repeated at another position
        other = (int(targets[q]) + 1) % N_CANDIDATES
        candidates[q][other] = candidates[q][int(targets[q])]
    return {"outputs": rng.standard_normal((N_QA, N_CANDIDATES)).astype(np.float32), "targets": targets,
            "candidates": candidates}


def plain_accuracy(chosen: np.ndarray, targets: np.ndarray) -> float:
    hits = 0
    for predicted, answer in zip(chosen.tolist(), targets.tolist()):
        hits += int(predicted == answer)
    return hits / len(chosen)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    results: dict = {}
    rng = np.random.default_rng(0)
    normal = rng.standard_normal((N_RETRIEVAL, N_RETRIEVAL)).astype(np.float32)
    for name, scores in (("retrieval 1000x1000 (no ties)", normal),
                         ("retrieval 1000x1000 (ties: 1 decimal)", np.round(normal, 1))):
        corrected_s, corrected = best_time(lambda: RetrievalMetric(None).compute_metrics(scores), args.rounds)
        compat_s, compat = best_time(lambda: RetrievalMetric(ORIGINAL).compute_metrics(scores), args.rounds)
        original_s, original = best_time(lambda: original_retrieval_metrics(scores), args.rounds)
        assert compat == {key: float(value) for key, value in original.items()}, (compat, original)
        results[name] = {"corrected_s": corrected_s, "compat_s": compat_s, "original_s": original_s,
                         "corrected": corrected, "original": compat}
    qa = qa_inputs()
    corrected_s, corrected = best_time(lambda: QAMetric(None).compute_metrics(**qa), args.rounds)
    compat_s, compat = best_time(lambda: QAMetric(ORIGINAL).compute_metrics(**qa), args.rounds)
    loop_s, loop = best_time(lambda: plain_accuracy(np.argmax(qa["outputs"], axis=1), qa["targets"]), args.rounds)
    assert compat["acc"] == loop
    row = {"corrected_s": corrected_s, "compat_s": compat_s, "original_loop_s": loop_s,
           "corrected": corrected, "original": compat}
    try:
        from sklearn.metrics import accuracy_score
    except ImportError:
        pass
    else:
        row["original_sklearn_s"], sk = best_time(
            lambda: accuracy_score(qa["targets"], np.argmax(qa["outputs"], axis=1)), args.rounds)
        assert float(sk) == compat["acc"]
    results["QA 2990x5"] = row
    for name, row in results.items():
        times = "  ".join(f"{key[:-2]} {value * 1e3:8.2f} ms" for key, value in row.items() if key.endswith("_s"))
        print(f"{name:40s} {times}")
        print(f"{'':40s} corrected {row['corrected']}  original {row['original']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
