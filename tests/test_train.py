"""Real fairseq-train runs through the launcher on the small demo: training, checkpoints, tensorboard logs,
and resuming from checkpoint_last.pt."""
import logging
import os
import re
import subprocess
import sys

import pytest
import torch

import tempclr  # noqa: F401  (allows argparse.Namespace in weights_only loads, as fairseq checkpoints need)

from conftest import ROOT, small_demo_config
from tempclr.utils.checkpoint import checkpoint_progress, load_checkpoint_state



def launch(config):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "locallaunch.py", config, "--jobtype", "local_single"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def with_max_update(tmp_path, base, updates):
    path = tmp_path / f"max_update_{updates}.yaml"
    path.write_text(f"includes: {base}\nfairseq:\n  optimization:\n    max_update: {updates}\n")
    return str(path)


def updates_logged(log):
    return [int(n) for n in re.findall(r"num_updates=(\d+)", log)]


def train_losses(log):
    """``{update: "loss=..."}`` of every per-update training line (``log_interval: 1``), as logged."""
    return {int(update): loss for loss, update in
            re.findall(r"\| train_inner \|.*?\b(loss=[-\d.e]+).*?num_updates=(\d+)", log)}


def test_two_updates_through_the_launcher(tmp_path, small_demo, monkeypatch, caplog):
    """The default tier's training run: the launcher (what ``locallaunch.py CONFIG --jobtype local_single`` runs)
    builds the fairseq-train command, and fairseq's own entry point runs that command line for two updates, in
    this process: a fairseq-train process costs ~8 s of CPU in imports alone (torch, fairseq, transformers), over
    the default tier's budget.  The slow tier below starts real fairseq-train processes, resumes and compares
    losses."""
    from fairseq_cli import train as fairseq_train
    from tempclr_cli.localjob import LocalJob

    save_dir = tmp_path / "save"
    config = tmp_path / "two_updates.yaml"
    config.write_text(f"includes: {small_demo_config(tmp_path, small_demo, save_dir)}\nfairseq:\n"
                      "  optimization:\n    max_update: 2\n  dataset:\n    disable_validation: true\n")
    monkeypatch.chdir(ROOT)
    command = LocalJob(str(config), "local_single").command()
    assert command[:2] == ["fairseq-train", str(config)] and "--user-dir" in command and "--cpu" in command
    tempclr.register_fairseq()  # what --user-dir does in a fresh fairseq-train process
    monkeypatch.setattr(sys, "argv", command)
    caplog.set_level(logging.INFO)  # fairseq logs each update through the logging module
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains fastest on one thread
    try:
        fairseq_train.cli_main()
    finally:
        torch.set_num_threads(threads)
    log = caplog.text
    assert updates_logged(log)[-1] == 2, log[-3000:]
    state = torch.load(save_dir / "checkpoint_last.pt", map_location="cpu", weights_only=True)
    assert state["optimizer_history"][-1]["num_updates"] == 2
    assert any(k.startswith("mmmodel.video_encoder.") for k in state["model"])
    # tempclr's restricted loaders admit everything fairseq-train wrote (cfg's Namespaces, meters, optimizer)
    assert set(load_checkpoint_state(str(save_dir / "checkpoint_last.pt"))) == set(state["model"])
    assert checkpoint_progress(str(save_dir / "checkpoint_last.pt")).num_updates == 2


@pytest.mark.slow
def test_train_then_resume(tmp_path, small_demo):
    save_dir = tmp_path / "save"
    base = small_demo_config(tmp_path, small_demo, save_dir)
    first = launch(with_max_update(tmp_path, base, 4))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    log = first.stdout + first.stderr
    assert "launching fairseq-train" in log and "--cpu" in log
    assert updates_logged(log)[-1] == 4
    for name in ("checkpoint_last.pt", "checkpoint_best.pt", "config.yaml"):
        assert (save_dir / name).is_file(), name
    assert os.listdir(save_dir / "run_0"), "tensorboard logs"
    state = torch.load(save_dir / "checkpoint_last.pt", map_location="cpu", weights_only=True)
    assert any(k.startswith("mmmodel.video_encoder.") for k in state["model"])

    # same run, longer: resumes from checkpoint_last.pt at update 4 (torch >= 2.6 safe-globals fix)
    second = launch(with_max_update(tmp_path, base, 8))
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    log = second.stdout + second.stderr
    assert re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ 4 updates\)", log), log[-3000:]
    assert updates_logged(log)[0] > 4 and updates_logged(log)[-1] == 8
    assert os.path.isdir(save_dir / "run_1")
    resumed = train_losses(log)

    # the resumed run is the run it resumes: an uninterrupted run logs the same losses, update by update
    whole = launch(with_max_update(tmp_path, small_demo_config(tmp_path, small_demo, tmp_path / "whole"), 8))
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]
    uninterrupted = train_losses(whole.stdout + whole.stderr)
    assert sorted(resumed) == [5, 6, 7, 8] and sorted(uninterrupted) == list(range(1, 9))
    assert resumed == {u: uninterrupted[u] for u in resumed}


@pytest.mark.slow
def test_tempclr_alignment_training(tmp_path, small_demo):
    """AlignRetriTask (configs/demo/how2_dtw.yaml) trains through the launcher with a non-zero alignment loss."""
    save_dir = tmp_path / "tempclr"
    base = small_demo_config(tmp_path, small_demo, save_dir, base="configs/demo/how2_dtw.yaml")
    config = tmp_path / "tempclr.yaml"
    config.write_text(f"includes: {base}\ndataset:\n  clip_per_video: 16\nalignment:\n  sampling_threshold: 3\n"
                      "fairseq:\n  optimization:\n    max_update: 3\n  checkpoint:\n    finetune_from_model: null\n")
    run = launch(str(config))
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    align = [float(x) for x in re.findall(r"align_loss=([0-9.]+)", log)]
    assert align and all(a > 0 for a in align), log[-3000:]
    assert (save_dir / "checkpoint_last.pt").is_file()
