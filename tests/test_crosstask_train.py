"""A real ``fairseq-train`` run of AlignLocalTask (CrossTask fine-tuning) through
``locallaunch.py`` on a small demo release and a tiny BERT: it exits 0, saves checkpoint_last.pt, and logs the
BCE and alignment terms (alignment > 0 while training, 0 in validation)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from tempclr.demo.bert import write_tiny_bert
from tempclr.demo.crosstask import write_crosstask_release
from tempclr.demo.world import World

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_config(tmp_path) -> str:
    data, release = tmp_path / "crosstask", tmp_path / "crosstask" / "crosstask_release"
    config = OmegaConf.load(os.path.join(ROOT, "configs", "demo", "crosstask.yaml"))
    config.dataset.update({
        "bert_name": str(tmp_path / "bert"), "train_path": str(release / "videos.csv"),
        "train_csv_path": str(release / "videos.csv"), "val_path": str(release / "videos_val.csv"),
        "val_csv_path": str(release / "videos_val.csv"), "primary_path": str(release / "tasks_primary.txt"),
        "related_path": str(release / "tasks_related.txt"), "vfeat_dir": str(data / "features"),
        "annotation_path": str(release / "annotations"), "n_train": 2})
    config.fairseq.common.log_interval = 1
    config.fairseq.optimization.max_epoch = 1
    config.fairseq.optimization.total_num_update = 16
    config.fairseq.optimization.warmup_updates = 2
    del config.fairseq.checkpoint["restore_file"]
    config.fairseq.checkpoint.save_dir = str(tmp_path / "run")
    path = str(tmp_path / "crosstask_train.yaml")
    OmegaConf.save(config, path)
    return path


@pytest.mark.slow
def test_alignlocaltask_fairseq_train(tmp_path):
    world = World(0)
    write_crosstask_release(world, str(tmp_path / "crosstask"), seed=1, videos_per_task=4)  # 2 train, 1 test
    write_tiny_bert(str(tmp_path / "bert"), world.text_corpus(), seed=0)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run([sys.executable, "locallaunch.py", train_config(tmp_path), "--jobtype", "local_single"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    assert (tmp_path / "run" / "checkpoint_last.pt").is_file(), log[-4000:]
    # fairseq's simple log format: per-update lines "| train_inner | epoch 001: ... loss=0.7, bce_loss=..., ..."
    # (key=value), per-epoch validation lines "| valid | ... | loss 0.6 | bce_loss ... |" (key value)
    train_lines = [line for line in log.splitlines() if "| train_inner |" in line]
    train = [{k: float(v) for k, v in re.findall(r"(\w*loss)=([-\d.e]+)", line)} for line in train_lines]
    assert len(train) >= 8 and all(set(t) == {"loss", "bce_loss", "align_loss"} for t in train), log[-4000:]
    for t in train:  # L = (1 - 0.12) * BCE + 0.12 * L_seq, each logged to 4 decimals
        assert abs(t["loss"] - (0.88 * t["bce_loss"] + 0.12 * t["align_loss"])) < 2e-4, t
    assert max(t["align_loss"] for t in train) > 0, log[-4000:]
    valid_lines = [line for line in log.splitlines() if "valid on 'valid' subset" in line]
    assert valid_lines, log[-4000:]
    valid = {k: float(v) for k, v in re.findall(r"\| (\w*loss) ([-\d.e]+)", valid_lines[-1])}
    assert valid["align_loss"] == 0.0 and abs(valid["loss"] - 0.88 * valid["bce_loss"]) < 2e-4, valid_lines[-1]
