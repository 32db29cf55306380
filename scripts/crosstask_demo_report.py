#!/usr/bin/env python
"""Zero-shot CrossTask step localisation on the demo: the demo-pretrained VideoCLIP against an untrained model.

Both models are evaluated exactly as ``python locallaunch.py configs/demo/test_crosstask_zs.yaml --jobtype
local_predict`` evaluates one (same config, data loader, CrossTaskPredictor and CrossTaskMetric); the untrained
model is the config's model freshly initialised (the tiny demo BERT's weights, a random ``videomlp``), saved as a
checkpoint first so that both go through the same checkpoint loading.  Writes under ``--out``
(``runs/demo/crosstask_zs``)::

    untrained/checkpoint_untrained.pt      the freshly initialised model
    eval/pretrained.pkl, eval/untrained.pkl  {Y_pred, Y_true} (eval.save_path of the config)
    timelines/<task>_<vid>.png             predicted steps over the annotated intervals (pretrained model)
    report.json                            both recalls, per task

Needs ``data/demo`` with its CrossTask release (``scripts/make_demo_data.py``) and the pretrained checkpoint
(``make demo``).  Usage: ``python scripts/crosstask_demo_report.py [--config ...] [--out ...] [--timelines 4]``
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")


from tempclr.demo import pretrained_checkpoint
from tempclr.demo.compare import evaluate, save_untrained
from tempclr.evaluators.timeline import plot_timeline
from tempclr.processors.crosstask_release import read_annotation
from tempclr.utils.fileio import write_json_atomic
from tempclr.utils.load_config import cfg_get, load_config

DEFAULT_CONFIG = "configs/demo/test_crosstask_zs.yaml"


def write_timelines(outputs: dict, meta_processor, annotation_dir: str, folder: str, count: int) -> list:
    """PNG timelines of the first ``count`` test videos (task order, then video order)."""
    paths = []
    for task, by_vid in outputs["outputs"].items():
        for vid, y_pred in by_vid.items():
            if len(paths) >= count:
                return paths
            steps = meta_processor.task_steps[task]
            intervals = read_annotation(os.path.join(annotation_dir, f"{task}_{vid}.csv"), n_steps=len(steps))
            paths.append(plot_timeline(y_pred, intervals, steps, os.path.join(folder, f"{task}_{vid}.png"),
                                       title=f"task {task}, video {vid}: predicted (marker) vs annotated (bar)"))
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--out", default="runs/demo/crosstask_zs")
    parser.add_argument("--timelines", type=int, default=4, help="number of timeline PNGs (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the untrained model (default 0)")
    args = parser.parse_args(argv)

    config = load_config(config_file=args.config)
    pretrained_path = pretrained_checkpoint(config, args.config)
    untrained_path = save_untrained(args.config, os.path.join(args.out, "untrained", "checkpoint_untrained.pt"),
                                    args.seed, config)
    evaluated = evaluate(args.config, {"untrained": untrained_path, "pretrained": pretrained_path})
    results, outputs = evaluated["metrics"], evaluated["outputs"]
    n_videos = sum(len(v) for v in outputs["pretrained"]["targets"].values())
    timelines = write_timelines(outputs["pretrained"], evaluated["dataset"].meta_processor,
                                str(cfg_get(config, "dataset.annotation_path")),
                                os.path.join(args.out, "timelines"), args.timelines)
    write_json_atomic(os.path.join(args.out, "report.json"),
                      {"config": args.config, "test_videos": n_videos, "checkpoints": {
                          "pretrained": pretrained_path, "untrained": untrained_path}, "results": results,
                       "timelines": timelines})
    print(f"zero-shot CrossTask recall on the demo ({n_videos} test videos, mean over "
          f"{len(results['pretrained']) - 1} tasks): demo-pretrained {results['pretrained']['recall']:.3f}, "
          f"untrained {results['untrained']['recall']:.3f}")
    print(f"timelines: {', '.join(timelines)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
