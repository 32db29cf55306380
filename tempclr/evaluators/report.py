"""One checkpoint on every benchmark whose data is present: what ``tempclr-report CHECKPOINT`` runs.

For each benchmark of :data:`BENCHMARKS` the zero-shot test config under ``configs/`` is re-rooted and run
through :func:`tempclr.evaluators.evaluate.evaluate_checkpoints` (the same loading, predictor and metric as
``tempclr-predict``): a derived config is written under the report's work folder that ``includes:`` the original
and replaces

- every value starting with ``data/`` by the same path under ``data_root`` (the real data layout
  of README 'Real data and checkpoints'; ``data_root`` is laid out as the configs expect),
- ``fairseq.common_eval.path`` by the checkpoint, ``eval.save_path`` by a folder of the work folder,
- with a model config (by default ``config.yaml`` beside the checkpoint, which training writes there):
  ``dataset.bert_name`` and every ``model.*`` key that is not a class name (``num_hidden_video_layers``), so that
  a checkpoint of another size (the demo's) is built with its own architecture.

A benchmark is skipped, and named with the first file it lacks, when one of its re-rooted paths does not exist.
The test split of every other one is built before any evaluation; a benchmark whose data cannot be used (a
malformed file, a split its settings leave empty) stops the report with one error naming them all (``skip`` leaves
a benchmark out by name).
The table puts our numbers (in percent, the median rank as is) beside the published VideoCLIP and TempCLR numbers
of :mod:`tempclr.evaluators.published`, each with its source; the JSON holds everything.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from omegaconf import OmegaConf

from tempclr.evaluators.evaluate import evaluate_checkpoints
from tempclr.evaluators.published import published_for
from tempclr.utils.config_schema import cfg_get
from tempclr.utils.fileio import write_json_atomic, write_text_atomic
from tempclr.utils.load_config import recursive_config, rerooted_values
from tempclr.utils.registry import lookup

__all__ = ["Benchmark", "BENCHMARKS", "REPO_ROOT", "check_data", "derived_config", "missing_file", "run_report",
           "format_table", "write_report"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA_PREFIX = "data"
NOT_PERCENT = ("MR",)


@dataclass(frozen=True)
class Benchmark:
    """One row block of the report: ``name`` (the key of the published numbers), a label, the zero-shot test
    config (relative to the repository root)."""
    name: str
    label: str
    config: str


BENCHMARKS: Sequence[Benchmark] = (
    Benchmark("crosstask", "CrossTask step localisation", "configs/test_crosstask_zs.yaml"),
    Benchmark("youcook", "YouCook2 clip retrieval", "configs/test_youcook_zs.yaml"),
    Benchmark("youcook_fullvideo", "YouCook2 full-video retrieval", "configs/test_youcook_fullvideo_zs.yaml"),
    Benchmark("youcook_bg", "YouCook2 full video + background", "configs/test_youcook_fullvideo_bg_zs.yaml"),
    Benchmark("msrvtt", "MSR-VTT retrieval (1k-A)", "configs/videoclip/test_vtt_zs.yaml"),
    Benchmark("msrvtt_qa", "MSR-VTT multiple-choice QA", "configs/videoclip/test_vttqa_zs.yaml"),
    Benchmark("coin", "COIN action segmentation", "configs/videoclip/test_coin_zs.yaml"),
    Benchmark("didemo", "DiDeMo moment retrieval", "configs/videoclip/test_didemo_zs.yaml"),
)


def _rerooted(config: Any, data_root: str) -> Dict[str, Any]:
    """``rerooted_values(config, "data", data_root)`` as a plain nested dict: every ``data/...`` value moved
    under ``data_root``."""
    return OmegaConf.to_container(rerooted_values(config, DATA_PREFIX, data_root))


def _leaves(node: Dict[str, Any]) -> List[str]:
    out: List[str] = []
    for value in node.values():
        out += _leaves(value) if isinstance(value, dict) else [value]
    return out


def missing_file(config_path: str, data_root: str) -> Optional[str]:
    """The first re-rooted data path of ``config_path`` that does not exist (dataset key order), else None."""
    for path in _leaves(_rerooted(recursive_config(config_path), data_root)):
        if not os.path.exists(path):
            return path
    return None


def architecture(model_config: Optional[str]) -> Dict[str, Any]:
    """``{"dataset": {"bert_name": ...}, "model": {non-class keys}}`` of a training config, or ``{}``."""
    if model_config is None:
        return {}
    config = recursive_config(model_config)
    model = {str(k): v for k, v in (cfg_get(config, "model") or {}).items() if not str(k).endswith("_cls")}
    out: Dict[str, Any] = {"model": model} if model else {}
    bert = cfg_get(config, "dataset.bert_name")
    if bert is not None:
        out["dataset"] = {"bert_name": str(bert)}
    return out


def derived_config(benchmark: Benchmark, checkpoint: str, data_root: str, work_dir: str,
                   model_config: Optional[str] = None, configs_root: str = REPO_ROOT) -> str:
    """Write ``<work_dir>/<name>/test_<name>.yaml`` (see the module docstring) and return its path."""
    original = os.path.join(configs_root, benchmark.config)
    folder = os.path.join(work_dir, benchmark.name)
    overrides = OmegaConf.merge(
        _rerooted(recursive_config(original), os.path.abspath(data_root)), architecture(model_config),
        {"includes": os.path.abspath(original), "fairseq": {"common_eval": {"path": os.path.abspath(checkpoint)}},
         "eval": {"save_path": os.path.abspath(os.path.join(folder, "eval"))}})
    path = os.path.join(folder, f"test_{benchmark.name}.yaml")
    os.makedirs(folder, exist_ok=True)
    write_text_atomic(path, OmegaConf.to_yaml(overrides))
    return path


def _metric_names(config_path: str) -> List[str]:
    config = recursive_config(config_path)
    return list(lookup("metric", cfg_get(config, "metric"))(config).metric_names)


def _number(value: Any) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value


def check_data(config_path: str) -> None:
    """Build the test split of ``config_path`` as the evaluation will (its meta processor reads and checks every
    file): raises the loader's error naming the file, row or key when the data is not usable."""
    from tempclr.evaluators.evaluate import build_dataloader
    from tempclr.tasks.task import Task
    from tempclr.utils.load_config import load_config

    config = load_config(config_file=config_path)
    build_dataloader(Task.config_task(config), config)


def run_report(checkpoint: str, data_root: str, work_dir: str, model_config: Optional[str] = None,
               configs_root: str = REPO_ROOT, benchmarks: Sequence[Benchmark] = BENCHMARKS,
               skip: Sequence[str] = ()) -> Dict[str, Any]:
    """Evaluate ``checkpoint`` on every benchmark whose files are under ``data_root`` (except those named in
    ``skip``); returns the report dict (``evaluated``, ``skipped`` {name: reason}, ``rows`` of the table).

    Every present benchmark's test split is built first: when one fails (a malformed file, or a split left
    empty by the config's settings), one error names every failing benchmark and its reason before anything is
    evaluated (``skip`` leaves a benchmark out)."""
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    if not os.path.isdir(data_root):
        raise FileNotFoundError(f"--data-root {data_root} is not a folder (laid out as data/ in the configs)")
    if model_config is not None and not os.path.isfile(model_config):
        raise FileNotFoundError(f"model config {model_config} does not exist")
    names = [b.name for b in benchmarks]
    unknown = [name for name in skip if name not in names]
    if unknown:
        raise ValueError(f"--skip {' '.join(unknown)}: no such benchmark; valid: {', '.join(names)}")
    plan, skipped = [], {}
    for benchmark in benchmarks:          # every absence is known before anything runs
        original = os.path.join(configs_root, benchmark.config)
        if benchmark.name in skip:
            skipped[benchmark.name] = "left out (--skip)"
            continue
        if not os.path.isfile(original):
            skipped[benchmark.name] = f"config {benchmark.config} is not in this checkout"
            continue
        missing = missing_file(original, data_root)
        if missing is not None:
            skipped[benchmark.name] = f"missing {missing}"
        else:
            plan.append((benchmark, derived_config(benchmark, checkpoint, data_root, work_dir, model_config,
                                                   configs_root)))
    problems = []
    for benchmark, path in plan:
        try:
            check_data(path)
        except (ValueError, KeyError, FileNotFoundError) as error:
            problems.append(f"{benchmark.name} ({benchmark.config} re-rooted as {path}): {error}")
    if problems:
        raise ValueError("the data of these benchmarks cannot be evaluated (fix it, or leave the benchmark out with "
                         "--skip NAME):\n" + "\n".join(problems))
    evaluated: Dict[str, Any] = {}
    rows: List[Dict[str, Any]] = []
    for benchmark, path in plan:
        metrics = evaluate_checkpoints(path)[-1][1]
        names = _metric_names(path)
        evaluated[benchmark.name] = {"label": benchmark.label, "config": benchmark.config, "derived_config": path,
                                     "metrics": {n: _number(metrics.get(n)) for n in names}}
        for name in names:
            ours = _number(metrics.get(name))
            scale = 1.0 if name in NOT_PERCENT else 100.0
            row = {"benchmark": benchmark.name, "label": benchmark.label, "metric": name,
                   "ours": None if ours is None else ours * scale}
            for model in ("VideoCLIP", "TempCLR"):
                entry = published_for(benchmark.name, name, model)
                row[model] = None if entry is None else {"value": entry.value, "source": entry.source}
            rows.append(row)
    return {"checkpoint": os.path.abspath(checkpoint), "data_root": os.path.abspath(data_root),
            "model_config": model_config, "evaluated": evaluated, "skipped": skipped, "rows": rows}


def format_table(report: Dict[str, Any]) -> str:
    """The paper-style table: one line per benchmark/metric, ours beside VideoCLIP and TempCLR (zero-shot), then
    the sources and the skipped benchmarks."""
    lines = [f"zero-shot results of {report['checkpoint']} (percent; MR is a rank)",
             f"{'benchmark / metric':46s} {'ours':>8s} {'VideoCLIP':>10s} {'TempCLR':>8s}"]
    sources: List[str] = []
    for row in report["rows"]:
        cells = []
        for model in ("VideoCLIP", "TempCLR"):
            entry = row[model]
            if entry is None:
                cells.append("-")
                continue
            if entry["source"] not in sources:
                sources.append(entry["source"])
            cells.append(f"{entry['value']:.1f} [{sources.index(entry['source']) + 1}]")
        ours = "-" if row["ours"] is None else f"{row['ours']:.1f}"
        lines.append(f"{row['label'] + ' ' + row['metric']:46s} {ours:>8s} {cells[0]:>10s} {cells[1]:>8s}")
    lines += [f"[{i + 1}] {source}" for i, source in enumerate(sources)]
    lines += [f"skipped {name}: {reason}" for name, reason in report["skipped"].items()]
    return "\n".join(lines)


def write_report(report: Dict[str, Any], out: str) -> None:
    """The report as JSON at ``out`` (temp file, then rename)."""
    write_json_atomic(out, report)
