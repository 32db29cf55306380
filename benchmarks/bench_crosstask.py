"""CrossTask benchmarks: the step-assignment DP per video, compiled (numba) vs the plain-Python reference.

Costs are ``-log_softmax`` of standard-normal logits over the K steps, as the CrossTask evaluation builds them.
Each case first checks that the implementations give the same ``Y``, then times them (best of 5 rounds of
``--reps`` calls for the compiled path, best of 3 rounds of ``--ref-reps`` calls for the reference).
``--original dp`` also times CrossTask's own Cython ``dp`` (build ``dp.pyx`` of DmZhukov/CrossTask with
``python setup.py build_ext --inplace`` and put that folder on ``PYTHONPATH``).
Then, when the demo data and the demo checkpoint exist, the whole zero-shot CrossTask evaluation of
``configs/demo/test_crosstask_zs.yaml`` is timed in videos per second (run from the repository root).

    .venv/bin/python benchmarks/bench_crosstask.py [--reps 2000] [--ref-reps 3] [--original dp] [--json out.json]
        [--zero-shot-config configs/demo/test_crosstask_zs.yaml]
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from typing import Callable, Optional

import numpy as np

from tempclr.evaluators.dp import dp, dp_reference

DP_CASES = [(300, 10), (1000, 20)]  # (T seconds, K steps) per video
ZERO_SHOT_CONFIG = "configs/demo/test_crosstask_zs.yaml"


def neg_log_softmax_costs(rng: np.random.Generator, T: int, K: int) -> np.ndarray:
    """float32 [T, K] costs ``-log_softmax(logits, axis=1)`` of standard-normal logits."""
    logits = rng.standard_normal((T, K))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return (-log_probs).astype(np.float32)


def seconds_per_call(fn: Callable[[], None], reps: int, rounds: int) -> float:
    """Best over ``rounds`` of the mean wall time of ``reps`` calls of ``fn``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - start) / reps)
    return best


def bench_dp(T: int, K: int, reps: int, ref_reps: int, original_dp: Optional[Callable] = None,
             seed: int = 0) -> dict:
    """Time ``dp``, ``dp_reference`` (and ``original_dp`` when given) on one random video of ``T`` seconds
    and ``K`` steps."""
    C = neg_log_softmax_costs(np.random.default_rng(seed), T, K)
    Y_fast = np.zeros((T, K), dtype=np.float32)
    Y_ref = np.zeros((T, K), dtype=np.float32)
    dp(Y_fast, C)  # compiles, or loads the numba cache
    dp_reference(Y_ref, C)
    if not np.array_equal(Y_fast, Y_ref):
        raise AssertionError(f"dp and dp_reference disagree at T={T}, K={K}")
    fast_s = seconds_per_call(lambda: dp(Y_fast, C), reps, rounds=5)
    ref_s = seconds_per_call(lambda: dp_reference(Y_ref, C), ref_reps, rounds=3)
    row = {"T": T, "K": K, "compiled_ms": fast_s * 1e3, "reference_ms": ref_s * 1e3, "speedup": ref_s / fast_s}
    if original_dp is not None:
        Y_orig = np.zeros((T, K), dtype=np.float32)
        original_dp(Y_orig, C)
        if not np.array_equal(Y_fast, Y_orig):
            raise AssertionError(f"dp and the original dp disagree at T={T}, K={K}")
        row["original_ms"] = seconds_per_call(lambda: original_dp(Y_orig, C), reps, rounds=5) * 1e3
    return row


def bench_zero_shot_eval(config_file: str = ZERO_SHOT_CONFIG, rounds: int = 2) -> Optional[dict]:
    """Whole zero-shot CrossTask evaluation on the demo data, in videos per second.

    Times, best of ``rounds``, the evaluation ``predict.py`` runs for ``config_file`` (loading and windowing each
    test video, the model on every window, window averaging, the DP, the metric), after building the data loader
    and loading the checkpoint (not timed).  Predictions go to a temp folder.  Returns None, saying why, when the
    demo data or the demo checkpoint is missing (``scripts/make_demo_data.py``, ``make demo``)."""
    import torch

    from tempclr.evaluators import Evaluator
    from tempclr.tasks.task import Task
    from tempclr.utils.load_config import cfg_get, load_config
    from tempclr.evaluators.evaluate import build_dataloader

    config = load_config(config_file=config_file)
    needed = [str(cfg_get(config, "fairseq.common_eval.path")), str(cfg_get(config, "dataset.train_csv_path"))]
    missing = [path for path in needed if not os.path.isfile(path)]
    if missing:
        print(f"zero-shot evaluation not measured: {', '.join(missing)} missing (make demo)", file=sys.stderr)
        return None
    task = Task.config_task(config)
    dataloader = build_dataloader(task, config)
    task.build_model()
    task.load_checkpoint(needed[0])
    evaluator = Evaluator(config, dataloader)
    best, recall = float("inf"), None
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(rounds):
            start = time.perf_counter()
            result = evaluator.evaluate(task.model, output_file=os.path.join(folder, "predictions"))
            best = min(best, time.perf_counter() - start)
            recall = result["recall"]
    n_videos = len(dataloader.dataset)
    return {"videos": n_videos, "seconds": best, "videos_per_s": n_videos / best, "recall": recall,
            "threads": torch.get_num_threads()}


def write_json_atomic(path: str, payload: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000, help="compiled calls per timing round")
    parser.add_argument("--ref-reps", type=int, default=3, help="reference calls (one round)")
    parser.add_argument("--original", default=None,
                        help="import name of a built CrossTask dp.pyx module (e.g. dp) to time as well")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--zero-shot-config", default=ZERO_SHOT_CONFIG,
                        help=f"evaluation config of the zero-shot timing (default {ZERO_SHOT_CONFIG})")
    args = parser.parse_args(argv)

    original_dp = importlib.import_module(args.original).dp if args.original else None
    rows = [bench_dp(T, K, args.reps if T * K <= 3000 else max(1, args.reps // 5), args.ref_reps, original_dp)
            for T, K in DP_CASES]
    original_header = " original Cython (ms / video) |" if original_dp else ""
    print(f"| T | K | compiled (ms / video) |{original_header} reference (ms / video) | speed-up vs reference |")
    print("|---|---|---|" + ("---|" if original_dp else "") + "---|---|")
    for row in rows:
        original_cell = f" {row['original_ms']:.4f} |" if original_dp else ""
        print(f"| {row['T']} | {row['K']} | {row['compiled_ms']:.4f} |{original_cell} {row['reference_ms']:.1f} "
              f"| {row['speedup']:.0f}x |")
    zero_shot = bench_zero_shot_eval(args.zero_shot_config)
    if zero_shot is not None:
        print(f"zero-shot CrossTask evaluation on the demo: {zero_shot['videos_per_s']:.1f} videos/s "
              f"({zero_shot['videos']} videos in {zero_shot['seconds']:.2f} s, recall {zero_shot['recall']:.3f}, "
              f"{zero_shot['threads']} torch threads)")
    if args.json:
        write_json_atomic(args.json, {"dp": rows, "zero_shot_eval": zero_shot})
    return 0


if __name__ == "__main__":
    sys.exit(main())
