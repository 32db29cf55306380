#!/usr/bin/env python
"""Draw, for one video, the caption × clip distance matrix and the soft alignment over it.

    python scripts/plot_alignment.py [--config configs/demo/how2_dtw.yaml] [--checkpoint PATH]
                                     [--video ID] [--gamma 0.1] [--out runs/demo/alignment.png]

Each caption of the video is one row; its clip (the seconds its caption spans) is the column of the same index,
so the true alignment is the diagonal.  The alignment is the expected-alignment matrix of soft-DTW or soft-OTAM
(the gradient of the score w.r.t. the distances), i.e. what the TempCLR loss pushes on.
"""
from __future__ import annotations

import argparse
import math
import os
import sys


import torch

from tempclr.modules.alignment import expected_alignment
from tempclr.processors.how2processor import (ShardedHow2MetaProcessor, ShardedTextProcessor,
                                              ShardedVideoProcessor)
from tempclr.processors.processor import Aligner, get_tokenizer
from tempclr.tasks.task import Task
from tempclr.utils.config_schema import cfg_get, setting
from tempclr.utils.load_config import load_config
from tempclr.modules.similarity import cos_sim
from tempclr.utils.plots import plot_alignment


def caption_clips(config, video_id=None, max_captions=16):
    """``(video_id, model inputs [n, ...], caption strings, clip labels)`` for one validation video."""
    dataset_config = config.dataset.copy()
    dataset_config.split = "valid"
    meta = ShardedHow2MetaProcessor(dataset_config)
    keys = [key for key, _ in (meta[i] for i in range(len(meta)))]
    key = keys[0] if video_id is None else next((k for k in keys if k[0] == video_id), None)
    if key is None:
        raise KeyError(f"video {video_id!r} is not in {dataset_config.val_path}")
    features = ShardedVideoProcessor(dataset_config)(key)
    text = ShardedTextProcessor(dataset_config)(key)
    aligner = Aligner(dataset_config)
    tokenizer = get_tokenizer(str(dataset_config.bert_name))
    inputs = {"caps": [], "cmasks": [], "vfeats": [], "vmasks": []}
    captions, clips = [], []
    for i in range(min(len(text["cap"]), max_captions)):
        start = max(0, math.floor(text["start"][i]))
        end = min(len(features), max(start + 1, math.ceil(text["end"][i])))
        caps, cmasks = aligner._build_text_seq(text, [i])
        vfeats, vmasks = aligner._build_video_seq(features, {"start": [start], "end": [end]})
        for name, value in zip(inputs, (caps, cmasks, vfeats, vmasks)):
            inputs[name].append(torch.as_tensor(value))
        captions.append(tokenizer.decode(text["cap"][i]))
        clips.append(f"{start}-{end}")
    return key[0], {k: torch.stack(v) for k, v in inputs.items()}, captions, clips


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo/how2_dtw.yaml")
    parser.add_argument("--checkpoint", default=None, help="default: <save_dir>/checkpoint_best.pt")
    parser.add_argument("--video", default=None, help="a validation video id (default: the first)")
    parser.add_argument("--gamma", type=float, default=None, help="default: alignment.gamma or 0.1")
    parser.add_argument("--out", default=None, help="default: <save_dir>/alignment_<video>.png")
    args = parser.parse_args(argv)

    config = load_config(config_file=args.config, dryrun=True)
    save_dir = str(cfg_get(config, "fairseq.checkpoint.save_dir"))
    checkpoint = args.checkpoint or os.path.join(save_dir, "checkpoint_best.pt")
    mode = str(setting(config, "alignment.metric"))
    gamma = args.gamma if args.gamma is not None else float(setting(config, "alignment.gamma"))
    task = Task.config_task(config)
    model = task.build_model()
    task.load_checkpoint(checkpoint)
    model.eval()
    video_id, inputs, captions, clips = caption_clips(config, args.video)
    with torch.no_grad():
        outputs = model(**inputs)
    distance = 1 - cos_sim(outputs["pooled_text"], outputs["pooled_video"])
    alignment = expected_alignment(distance, gamma, "otam_both" if mode == "otam" else "dtw")
    if mode == "otam":
        alignment = alignment / 2  # the two directions' alignments summed: back to 0..1
    out = args.out or os.path.join(save_dir, f"alignment_{video_id}.png")
    title = f"{video_id}: caption x clip distance, soft-{mode.upper()} expected alignment (gamma {gamma})\n{checkpoint}"
    plot_alignment(distance.numpy(), alignment.numpy(), captions, clips, out, title)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
