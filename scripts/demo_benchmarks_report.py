#!/usr/bin/env python
"""Every demo benchmark in one table: the demo-pretrained VideoCLIP (``make demo``) against an untrained model and
chance on each zero-shot demo config, and MSR-VTT / COIN fine-tuned from it (``make demo-benchmarks``).

Rows are benchmark/metric; columns:

- ``chance``: the expected value of the metric for random scores, computed from the evaluated set's sizes
  (:func:`tempclr.demo.compare.metric_chance`; "-" where no exact value exists, e.g. CrossTask's recall);
- ``untrained``: the config's model freshly initialised under ``--seed`` (the tiny demo BERT's weights, random
  video layers), saved as a checkpoint first;
- ``demo ckpt``: ``runs/demo/videoclip/checkpoint_best.pt``;
- ``fine-tuned``: for MSR-VTT and COIN, the demo checkpoint fine-tuned with ``configs/demo/<x>_videoclip.yaml``
  (``locallaunch.py ... --jobtype local_single``, a real training process) and its last checkpoint evaluated with
  ``configs/demo/test_<x>_videoclip.yaml`` (through ``evaluate_checkpoints``, which also sweeps the other
  checkpoints and warns that selecting among them would be selecting on the test split).

Every evaluation runs the config's own data loader, predictor and metric (:func:`tempclr.demo.compare.evaluate`).
``--data`` and ``--runs`` move the demo folders (``data/demo``, ``runs/demo``): the configs are then derived
(``includes:`` the original, those path prefixes replaced) under ``<out>/configs``.  A benchmark whose config is
not in this checkout is skipped and named.  Writes ``<out>/report.json`` (every number printed).

Usage: ``python scripts/demo_benchmarks_report.py [--out runs/demo/benchmarks] [--seed 0] [--no-finetune]
[--only NAME ...] [--data data/demo] [--runs runs/demo]``
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from omegaconf import OmegaConf  # noqa: E402

from tempclr.demo import pretrained_checkpoint  # noqa: E402
from tempclr.demo.compare import evaluate, metric_chance, save_untrained  # noqa: E402
from tempclr.evaluators.evaluate import evaluate_checkpoints  # noqa: E402
from tempclr.utils.fileio import numpy_to_json, write_json_atomic, write_text_atomic  # noqa: E402
from tempclr.utils.load_config import load_config, recursive_config, rerooted_values  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (name, zero-shot config, fine-tuning config or None, its test config or None)
BENCHMARKS = (
    ("msrvtt", "configs/demo/test_vtt_zs.yaml", "configs/demo/vtt_videoclip.yaml",
     "configs/demo/test_vtt_videoclip.yaml"),
    ("msrvtt_qa", "configs/demo/test_vttqa_zs.yaml", None, None),
    ("coin", "configs/demo/test_coin_zs.yaml", "configs/demo/coin_videoclip.yaml",
     "configs/demo/test_coin_videoclip.yaml"),
    ("didemo", "configs/demo/test_didemo_zs.yaml", None, None),
    ("youcook", "configs/demo/test_youcook_zs.yaml", None, None),
    ("crosstask", "configs/demo/test_crosstask_zs.yaml", None, None),
)
COLUMNS = ("chance", "untrained", "pretrained", "fine-tuned")
HEADERS = ("chance", "untrained", "demo ckpt", "fine-tuned")


def derive(config: str, data: str, runs: str, folder: str) -> str:
    """``config`` itself when the demo folders are the defaults, else a config under ``folder`` that includes it
    with ``data/demo/`` and ``runs/demo/`` replaced by ``data`` and ``runs``."""
    if os.path.abspath(data) == os.path.join(ROOT, "data", "demo") and \
            os.path.abspath(runs) == os.path.join(ROOT, "runs", "demo"):
        return config
    original = recursive_config(config)
    overrides = OmegaConf.merge(rerooted_values(original, "data/demo", os.path.abspath(data)),
                                rerooted_values(original, "runs/demo", os.path.abspath(runs)))
    overrides["includes"] = os.path.abspath(config)
    path = os.path.join(folder, os.path.basename(config))
    os.makedirs(folder, exist_ok=True)
    write_text_atomic(path, OmegaConf.to_yaml(overrides))
    return path


def fine_tune(train_config: str, test_config: str) -> Dict[str, Any]:
    """Train with ``train_config`` in a new process (``locallaunch.py --jobtype local_single``; a finished run
    resumes to its end at once), then evaluate ``fairseq.common_eval.path`` of ``test_config``."""
    command = [sys.executable, os.path.join(ROOT, "locallaunch.py"), train_config, "--jobtype", "local_single"]
    print("fine-tuning:", " ".join(command), flush=True)
    start = time.time()
    subprocess.run(command, check=True)
    seconds = time.time() - start
    path, metrics = evaluate_checkpoints(test_config)[-1]
    return {"checkpoint": path, "metrics": metrics, "train_seconds": seconds}


def _value(metrics: Optional[Dict[str, Any]], name: str) -> Optional[float]:
    if metrics is None or metrics.get(name) is None:
        return None
    return float(metrics[name])


def print_table(rows: List[Dict[str, Any]]) -> None:
    print(f"{'benchmark / metric':30s} " + " ".join(f"{h:>10s}" for h in HEADERS))
    for row in rows:
        cells = ["-" if row[c] is None else f"{row[c]:.4f}" for c in COLUMNS]
        print(f"{row['benchmark'] + ' ' + row['metric']:30s} " + " ".join(f"{c:>10s}" for c in cells))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo/benchmarks")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the untrained model (default 0)")
    parser.add_argument("--no-finetune", action="store_true", help="leave out the fine-tuned column")
    parser.add_argument("--only", nargs="+", default=None, choices=[b[0] for b in BENCHMARKS],
                        help="evaluate only these benchmarks")
    parser.add_argument("--data", default="data/demo", help="the demo data folder (default data/demo)")
    parser.add_argument("--runs", default="runs/demo", help="the demo runs folder (default runs/demo)")
    args = parser.parse_args(argv)

    selected = [b for b in BENCHMARKS if args.only is None or b[0] in args.only]
    skipped = {name: f"{config} is not in this checkout" for name, config, _, _ in selected
               if not os.path.isfile(os.path.join(ROOT, config))}
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    folder = os.path.join(args.out, "configs")
    rows: List[Dict[str, Any]] = []
    blocks: Dict[str, Any] = {}
    started = time.time()
    for name, config, train, test in selected:
        if name in skipped:
            continue
        config = derive(os.path.join(ROOT, config), args.data, args.runs, folder)
        loaded = load_config(config_file=config)
        checkpoints = {"untrained": save_untrained(config, os.path.join(args.out, "untrained", f"{name}.pt"),
                                                   args.seed, loaded),
                       "pretrained": pretrained_checkpoint(loaded, config)}
        result = evaluate(config, checkpoints, name)
        chance = metric_chance(result["metric"], result["outputs"]["pretrained"], result["dataset"])
        tuned = None
        if train is not None and not args.no_finetune:
            if os.path.isfile(os.path.join(ROOT, train)) and os.path.isfile(os.path.join(ROOT, test)):
                tuned = fine_tune(derive(os.path.join(ROOT, train), args.data, args.runs, folder),
                                  derive(os.path.join(ROOT, test), args.data, args.runs, folder))
            else:
                print(f"({name}: {train} or {test} is not in this checkout: no fine-tuned column)")
        blocks[name] = {"config": config, "checkpoints": checkpoints, "metrics": result["metrics"],
                        "chance": chance, "fine_tuned": tuned}
        for metric in result["metric"].metric_names:
            rows.append({"benchmark": name, "metric": metric, "chance": chance.get(metric),
                         "untrained": _value(result["metrics"]["untrained"], metric),
                         "pretrained": _value(result["metrics"]["pretrained"], metric),
                         "fine-tuned": _value(None if tuned is None else tuned["metrics"], metric)})
    seconds = time.time() - started
    print(f"demo benchmarks (chance: expected value for random scores; untrained: seed {args.seed}; "
          f"demo ckpt: make demo's checkpoint; fine-tuned: from it, last checkpoint), {seconds:.0f} s")
    print_table(rows)
    write_json_atomic(os.path.join(args.out, "report.json"),
                      {"rows": rows, "blocks": blocks, "skipped": skipped, "seconds": seconds},
                      default=numpy_to_json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
