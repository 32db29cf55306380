"""Offline evaluation of checkpoints with a test config (what ``tempclr-predict CONFIG`` and ``locallaunch.py
--jobtype local_predict`` run): :func:`evaluate_checkpoints`.  It follows the original predict.py, with these
changes:

- the checkpoint sweep (when ``fairseq.common_eval.path`` does not contain "best", every ``checkpoint*.pt`` beside
  ``eval.save_path``'s parent is evaluated) says which split selected the best checkpoint, and warns loudly when
  that is the test split;
- the best result is the maximum of ``metric_names[0]`` (the original started from 0.0 with a strict ``>``);
- it runs on CUDA when available, else CPU; loader workers come from ``fairseq.dataset.num_workers``;
- the model is built from the BERT config alone (``dataset.bert_name`` needs ``config.json`` and the vocabulary,
  not the BERT weights, which the checkpoint replaces anyway).
"""
from __future__ import annotations

import glob
import os
from typing import Any, Dict, List, Tuple

import torch
from torch.utils.data import DataLoader

from tempclr.evaluators.evaluator import Evaluator
from tempclr.processors.processor import SPLIT_PATH_KEYS
from tempclr.tasks.task import Task
from tempclr.utils.config_schema import cfg_get, setting
from tempclr.utils.load_config import load_config


__all__ = ["build_dataloader", "checkpoints_to_evaluate", "evaluate_checkpoints"]


def build_dataloader(task: Task, config: Any) -> DataLoader:
    """The test split of ``task`` (built here) in the config's batch size, unshuffled."""
    task.build_dataset()
    if task.test_data is None:
        raise ValueError("an evaluation config needs 'dataset.split: test' and 'dataset.test_path'")
    return DataLoader(task.test_data, batch_size=int(setting(config, "fairseq.dataset.batch_size")),
                      shuffle=False, num_workers=int(setting(config, "fairseq.dataset.num_workers")),
                      collate_fn=task.test_data.collater)


def checkpoints_to_evaluate(config: Any) -> List[str]:
    """``common_eval.path`` last; before it, when that path does not name a 'best' checkpoint, every
    ``checkpoint*.pt`` in the folder above ``eval.save_path`` (the original's sweep)."""
    path = cfg_get(config, "fairseq.common_eval.path")
    if path is None:
        raise ValueError("an evaluation config needs 'fairseq.common_eval.path' (the checkpoint to evaluate)")
    sweep = []
    if "best" not in os.path.basename(str(path)):
        folder = os.path.dirname(str(setting(config, "eval.save_path")).rstrip("/"))
        sweep = sorted(p for p in glob.glob(os.path.join(folder, "checkpoint*.pt")) if p != str(path))
    return sweep + [str(path)]


def evaluate_checkpoints(config_file: str) -> List[Tuple[str, Dict[str, Any]]]:
    """Evaluate every checkpoint of :func:`checkpoints_to_evaluate` on the test split of ``config_file``, print
    each result and, when there are several, the best (naming the split that selected it); returns
    ``[(checkpoint path, metrics)]`` in evaluation order."""
    config = load_config(config_file=config_file)
    task = Task.config_task(config)
    dataloader = build_dataloader(task, config)
    checkpoints = checkpoints_to_evaluate(config)
    missing = [p for p in checkpoints if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"checkpoint {missing[-1]} (fairseq.common_eval.path) does not exist; train one "
                                "first or put the released checkpoint there (see README 'Real data and checkpoints')")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # built from the BERT config alone: every weight comes from the checkpoints
    task.build_model(checkpoint=checkpoints[0])
    task.model.to(device)
    evaluator = Evaluator(config, dataloader)
    results = []
    for index, path in enumerate(checkpoints):
        if index > 0:
            task.load_checkpoint(path)
        name = os.path.splitext(os.path.basename(path))[0]
        output = "merged" if path == checkpoints[-1] else f"{name}_merged"
        print(f"evaluating {path}", flush=True)
        result = evaluator.evaluate(task.model, output_file=output)
        evaluator.metric.print_computed_metrics(result)
        results.append((path, result))
    if len(results) > 1:
        split = cfg_get(config, "dataset.split")
        source = cfg_get(config, f"dataset.{SPLIT_PATH_KEYS[split]}")
        best_path, best = max(results, key=lambda r: evaluator.metric.best_metric(r[1]))
        print(f"best results (selected on split '{split}', {source}, by {evaluator.metric.metric_names[0]}):")
        if split == "test":
            print("WARNING: this checkpoint was selected on the test split; report it only as an oracle "
                  "upper bound, select on a validation split for a fair number")
        print(best_path)
        evaluator.metric.print_computed_metrics(best)
    return results
