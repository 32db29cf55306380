"""The MMPT ``projects/retri/videoclip`` configs kept under configs/videoclip/: every class they name exists, the
launcher turns each into its command, the ``*_videoclip`` test configs say when the test split picked the
checkpoint, and (slow tier) the fine-tuning configs train for two updates on the demo sets through locallaunch.py."""
from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from test_registry import assert_classes_resolve
from tempclr.demo.msrvtt import write_msrvtt_set
from tempclr.demo.world import World
from tempclr_cli import localjob
from tempclr_cli.localjob import LocalJob

CONFIGS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "configs", "videoclip", "*.yaml")))
# the MMPT configs of this part of the suite (COIN and DiDeMo come with their own part)
EXPECTED = {"vtt_videoclip", "test_vtt_zs", "test_vtt_videoclip", "vttqa_videoclip", "test_vttqa_zs",
            "test_vttqa_videoclip", "youcook_videoclip", "test_youcook_videoclip", "test_youcook_zs",
            "crosstask_videoclip",
            "test_crosstask_videoclip", "test_crosstask_zs_videoclip", "how2"}


def test_the_configs_are_there():
    assert EXPECTED <= {name[:-5] for name in CONFIGS}


@pytest.fixture(scope="module")
def registries():
    """Import every kind's package once, outside the tests' time (the models' import of transformers and fairseq
    alone is most of the default tier's budget)."""
    import importlib

    from tempclr.utils.registry import KIND_PACKAGES

    for package in sorted(set(KIND_PACKAGES.values())):
        importlib.import_module(package)


@pytest.mark.parametrize("name", CONFIGS)
def test_each_config_resolves_and_launches(name, monkeypatch, registries):
    path = f"configs/videoclip/{name}"
    monkeypatch.chdir(ROOT)
    assert_classes_resolve(path)
    monkeypatch.setattr(localjob, "_cuda_available", lambda: False)
    command = LocalJob(path, None, dryrun=True).command()
    if name.startswith("test_"):
        assert command == [sys.executable, os.path.join("tempclr_cli", "predict.py"), path]
    else:
        assert command[:2] == ["fairseq-train", path] and "--cpu" in command and "--fp16" not in command


@pytest.fixture(scope="module")
def msrvtt(tmp_path_factory):
    out = tmp_path_factory.mktemp("videoclip_msrvtt") / "msrvtt"
    write_msrvtt_set(World(0), str(out), seed=0, train_per_task=2, test_per_task=2)
    return out


def test_vtt_videoclip_sweep_says_the_test_split_picked_the_checkpoint(msrvtt, small_demo, tmp_path, capsys):
    from tempclr_cli import predict
    from tempclr.tasks.task import Task
    from tempclr.utils.load_config import load_config

    folder = tmp_path / "vtt"
    folder.mkdir()
    path = tmp_path / "test_vtt_videoclip.yaml"
    path.write_text(f"""includes: {ROOT}/configs/videoclip/test_vtt_videoclip.yaml
dataset:
  bert_name: {small_demo}/bert
  test_path: {msrvtt}/MSRVTT_JSFUSION_test.csv
  vfeat_dir: {msrvtt}/features
fairseq:
  dataset:
    num_workers: 0
  common_eval:
    path: {folder}/checkpoint_last.pt
model:
  num_hidden_video_layers: 1
eval:
  save_path: {folder}/eval
""")
    task = Task.config_task(load_config(config_file=str(path)))
    for name, seed in (("checkpoint1.pt", 1), ("checkpoint_last.pt", 2)):
        torch.manual_seed(seed)
        torch.save({"model": task.build_model().state_dict()}, folder / name)
    assert predict.main([str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("best results"))
    assert lines[header].startswith(f"best results (selected on split 'test', {msrvtt}/MSRVTT_JSFUSION_test.csv")
    assert lines[header + 1].startswith("WARNING: this checkpoint was selected on the test split")


def demo_test_overrides(name, data, msrvtt):
    """The ``dataset:`` lines that point a configs/videoclip test config at the demo sets."""
    if "vttqa" in name:
        return f"  test_path: {msrvtt}/MSR_MC_test.csv\n  vfeat_dir: {msrvtt}/features\n"
    if "vtt" in name:
        return f"  test_path: {msrvtt}/MSRVTT_JSFUSION_test.csv\n  vfeat_dir: {msrvtt}/features\n"
    if "youcook" in name:
        youcook = f"{data}/youcook"
        return (f"  test_path: {youcook}/youcook_val.pkl\n"
                f"  trainval_annotation: {youcook}/youcookii_annotations_trainval.json\n"
                f"  vfeat_dir: {youcook}/features\n")
    release = f"{data}/crosstask/crosstask_release"
    return (f"  test_path: {release}/videos_val.csv\n  train_csv_path: {release}/videos.csv\n"
            f"  val_path: {release}/videos_val.csv\n  val_csv_path: {release}/videos_val.csv\n"
            f"  primary_path: {release}/tasks_primary.txt\n  related_path: {release}/tasks_related.txt\n"
            f"  vfeat_dir: {data}/crosstask/features\n  annotation_path: {release}/annotations\n  n_train: 13\n")


METRIC_LINE = {"vttqa": "acc: ", "vtt": "R@1: ", "youcook": "R@1: ", "crosstask": "Recall: "}


# COIN and DiDeMo test configs run end to end in tests/test_coin_didemo_e2e.py
@pytest.mark.parametrize("name", sorted(name for name in EXPECTED if name.startswith("test_")))
def test_each_test_config_runs_end_to_end_on_the_demo_sets(name, msrvtt, small_demo, tmp_path, capsys, monkeypatch):
    """locallaunch.py's predict command for the config (with the demo sets' paths, a random checkpoint named as the
    config names it, a 1-layer video encoder), run in this process."""
    from omegaconf import OmegaConf

    from tempclr_cli import predict
    from tempclr.tasks.task import Task
    from tempclr.utils.load_config import load_config

    original = OmegaConf.load(os.path.join(ROOT, "configs", "videoclip", f"{name}.yaml"))
    checkpoint = tmp_path / "run" / os.path.basename(original.fairseq.common_eval.path)
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""includes: {ROOT}/configs/videoclip/{name}.yaml
dataset:
  bert_name: {small_demo}/bert
{demo_test_overrides(name, small_demo, msrvtt)}fairseq:
  dataset:
    num_workers: 0
  common_eval:
    path: {checkpoint}
model:
  num_hidden_video_layers: 1
eval:
  save_path: {tmp_path / 'run' / 'eval'}
""")
    torch.manual_seed(0)
    checkpoint.parent.mkdir()
    torch.save({"model": Task.config_task(load_config(config_file=str(path))).build_model().state_dict()}, checkpoint)
    monkeypatch.chdir(ROOT)
    command = LocalJob(str(path), None, dryrun=True).command()
    assert command[1:] == [os.path.join("tempclr_cli", "predict.py"), str(path)]
    assert predict.main(command[2:]) == 0
    line = next(v for k, v in METRIC_LINE.items() if k in name)
    printed = capsys.readouterr().out
    assert f"evaluating {checkpoint}" in printed
    assert sum(row.startswith(line) for row in printed.splitlines()) == 1, printed[-2000:]
    assert os.listdir(tmp_path / "run" / "eval")


def finetune_overrides(name, data, msrvtt):
    if name in ("vtt_videoclip", "vttqa_videoclip"):
        extra = (f"  train_path: {msrvtt}/MSRVTT_train.csv\n  val_path: {msrvtt}/MSRVTT_JSFUSION_test.csv\n"
                 f"  json_path: {msrvtt}/MSRVTT_data.json\n  vfeat_dir: {msrvtt}/features\n  dup: 2\n")
        if name == "vtt_videoclip":
            extra += (f"  jsfusion_path: {msrvtt}/MSRVTT_JSFUSION_test.csv\n"
                      f"  full_test_path: {msrvtt}/MSRVTT_FULL_test.csv\n")
        return extra
    if name == "how2":
        shard = f"{data}/feat/feat_how2_s3d_shard"
        return (f"  train_path: {data}/how2/how2_s3d_train.lst\n  val_path: {data}/how2/how2_s3d_val.lst\n"
                f"  vfeat_dir: {shard}\n  tfeat_dir: {shard}/raw_caption_dedup.demo.\n"
                f"  num_video_per_batch: 2\n  clip_per_video: 4\n")
    if name == "youcook_videoclip":
        youcook = f"{data}/youcook"
        return (f"  train_path: {youcook}/youcook_val.pkl\n  val_path: {youcook}/youcook_val.pkl\n"
                f"  trainval_annotation: {youcook}/youcookii_annotations_trainval.json\n"
                f"  vfeat_dir: {youcook}/features\n")
    release = f"{data}/crosstask/crosstask_release"
    return (f"  train_path: {release}/videos.csv\n  train_csv_path: {release}/videos.csv\n"
            f"  val_path: {release}/videos_val.csv\n  val_csv_path: {release}/videos_val.csv\n"
            f"  primary_path: {release}/tasks_primary.txt\n  related_path: {release}/tasks_related.txt\n"
            f"  vfeat_dir: {data}/crosstask/features\n  annotation_path: {release}/annotations\n  n_train: 8\n")


@pytest.mark.slow   # five fairseq-train processes (~20-40 s each)
@pytest.mark.parametrize("name", ["vtt_videoclip", "vttqa_videoclip", "youcook_videoclip", "crosstask_videoclip",
                                  "how2"])
def test_finetuning_config_trains_two_updates_through_the_launcher(name, msrvtt, small_demo, tmp_path):
    save_dir = tmp_path / "save"
    batch = 1 if name in ("crosstask_videoclip", "how2") else 4
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""includes: {ROOT}/configs/videoclip/{name}.yaml
dataset:
  bert_name: {small_demo}/bert
{finetune_overrides(name, small_demo, msrvtt)}fairseq:
  common:
    log_interval: 1
    tensorboard_logdir: {tmp_path / 'tb'}
  dataset:
    batch_size: {batch}
    num_workers: 0
  optimization:
    max_update: 2
  checkpoint:
    restore_file: {tmp_path / 'no_pretrained_checkpoint.pt'}
    save_dir: {save_dir}
model:
  num_hidden_video_layers: 1
{"retri_centroids: 2" if name == "how2" else ""}
""")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    run = subprocess.run([sys.executable, "locallaunch.py", str(path), "--jobtype", "local_single"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    assert [int(n) for n in re.findall(r"num_updates=(\d+)", log)][-1] == 2, log[-3000:]
    assert os.path.isfile(save_dir / "checkpoint_last.pt")
    assert shlex.quote(str(path)) in log or str(path) in log
