"""End to end from raw video: mp4 -> S3D features -> video shards -> caption dedup -> tokens -> a short fairseq
training run -> tempclr-search-videos finds the video a caption came from.

32 synthetic 8-second videos, each a solid colour with a moving stripe, each captioned with its own word
("this kilo is nice").  S3D has random weights whose BatchNorm statistics are measured on these videos (with the
default statistics a random S3D maps every video to the same vector), so different videos give different features.
"""
import colorsys
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from synthetic_video import write_video

pytestmark = pytest.mark.slow

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
         "romeo sierra tango uniform victor whiskey xray yankee zulu apple banana cherry grape lemon mango").split()


def coloured_stripes(index: int, count: int):
    rgb = np.array([int(255 * c) for c in colorsys.hsv_to_rgb(index / count, 0.9, 0.9)], np.uint8)

    def frame(k, height, width):
        img = np.empty((height, width, 3), np.uint8)
        img[:] = rgb
        img[(k // 5 + index) % height, :] = 255 - rgb
        return img
    return frame


def calibrated_random_s3d(videos, path):
    from tempclr.processors.models.s3dg import S3D
    from tempclr.processors.videoreader import read_clips

    torch.manual_seed(0)
    model = S3D(None)
    clips = np.concatenate([read_clips(v, size=16)[:2] for v in videos])
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.momentum = None          # the plain mean over the calibration batch
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float() / 255)
    torch.save(model.state_dict(), path)


def test_raw_video_to_search(tmp_path):
    from tempclr.demo.bert import write_tiny_bert
    from tempclr_cli import dedup_captions
    from tempclr_cli import extract, pretokenization, shard_feature
    from tempclr_cli.search_videos import search

    vdir = tmp_path / "videos"
    vdir.mkdir()
    captions = {}
    for i, word in enumerate(WORDS):
        write_video(str(vdir / f"{word}.mp4"), 25, 32, 24, 8 * 25, frame=coloured_stripes(i, len(WORDS)),
                    lossless=False)
        captions[word] = {"start": [0.0, 1.5, 3.0, 4.5, 6.0], "end": [2.0, 3.5, 5.0, 6.5, 7.9],
                          "text": [f"here is the {word}", f"the {word} again", f"look at this {word}",
                                   f"this {word} is nice", f"{word} at the end"]}
    (tmp_path / "raw_caption.json").write_text(json.dumps(captions))
    calibrated_random_s3d([str(vdir / f"{w}.mp4") for w in WORDS], tmp_path / "s3d.pth")

    feat, shard = tmp_path / "feat", tmp_path / "shard"
    assert extract.main(["--vdir", str(vdir), "--fdir", str(feat), "--s3d_checkpoint", str(tmp_path / "s3d.pth"),
                         "--size", "16", "--device", "cpu", "--no_progress", "--strict",
                         # one decoding thread: S3D's batches then hold the same clips in every run, so the
                         # features, and the short training on them, are the same to the bit from run to run
                         "--num_decoding_thread", "1"]) == 0
    first = np.stack([np.load(feat / f"{w}.npy")[0].astype(np.float32) for w in WORDS])
    assert (first @ first.T)[np.triu_indices(len(WORDS), 1)].max() < 0.9      # the videos are told apart
    for split in ("train", "val"):
        (tmp_path / f"{split}.lst").write_text("\n".join(WORDS) + "\n")
    shard_feature.main(["--feat-dir", str(feat), "--train-list", str(tmp_path / "train.lst"),
                        "--val-list", str(tmp_path / "val.lst"), "--shard-dir", str(shard), "--shard-size", "32"])
    assert dedup_captions.main(["--captions", str(tmp_path / "raw_caption.json"),
                                "--out", str(tmp_path / "raw_caption_dedup.pkl"), "--feat-dir", str(feat)]) == 0
    write_tiny_bert(str(tmp_path / "bert"), [t for c in captions.values() for t in c["text"]], seed=0)
    pretokenization.main(["--captions", str(tmp_path / "raw_caption_dedup.pkl"), "--tokenizer",
                          str(tmp_path / "bert"), "--shard-dir", str(shard), "--prefix", "raw_caption_dedup.tiny."])

    config = tmp_path / "how2.yaml"
    config.write_text(f"""includes: {ROOT}/configs/demo/how2.yaml
dataset:
  bert_name: {tmp_path}/bert
  train_path: {tmp_path}/train.lst
  val_path: {tmp_path}/val.lst
  vfeat_dir: {shard}
  tfeat_dir: {shard}/raw_caption_dedup.tiny.
  num_video_per_batch: 4
  clip_per_video: 4
  sampled_video_max_len: 12
fairseq:
  common:
    log_interval: 8
  dataset:
    num_workers: 0
  optimization:
    total_num_update: 160
    warmup_updates: 8
    max_epoch: 20
  checkpoint:
    save_dir: {tmp_path}/run
eval:
  save_path: {tmp_path}/run
retri_centroids: 2
num_cands: 8
""")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "locallaunch.py", str(config), "--jobtype", "local_single"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoint_best.pt").is_file()

    queries = [f"this {w} is nice" for w in WORDS]
    results = search(str(vdir), str(config), queries, s3d_checkpoint=str(tmp_path / "s3d.pth"), fdir=str(feat),
                     topk=5, size=16, device="cpu")
    ranks = []
    for word, query in zip(WORDS, queries):
        found = [os.path.basename(hit.video)[:-4] for hit in results[query]]
        ranks.append(found.index(word) + 1 if word in found else None)
    top1 = sum(rank == 1 for rank in ranks) / len(WORDS)
    top5 = sum(rank is not None for rank in ranks) / len(WORDS)
    # chance: 1/32 = 0.03 at top 1 and 5/32 = 0.16 at top 5.  Measured after these 160 updates on the features of
    # the ffmpeg-rule extractor (one decoding thread, so every run gives these): fairseq seed 1 (this config) 0.09
    # and 0.88, seed 2 0.81 and 0.94, seed 3 0.34 and 0.97.  Top 1 of so short a run swings with the seed; top 5
    # does not: the bounds are 3x chance at top 1 and 4.8x at top 5 (24 of 32 videos found), which no run on
    # unrelated features reaches.
    top1_floor = 3 / len(WORDS)
    assert top1 >= top1_floor and top5 >= 0.75, (top1, top5, ranks)
