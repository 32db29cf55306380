"""locallaunch.py / LocalJob: the command each seed config expands to."""
import os
import shlex
import subprocess
import sys

import pytest

from test_registry import assert_classes_resolve

from tempclr_cli import localjob
from tempclr_cli.localjob import LocalJob

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "fairseq-train {} --user-dir tempclr --task mmtask --arch mmarch --criterion mmloss"
HOW2_FLAGS = ("--tensorboard-logdir runs/retri/videoclip/run_0 --log-interval 1000 --fp16 --num-workers 4 "
              "--batch-size 1 --lr 2e-05 --clip-norm 2.0 --optimizer adam --adam-betas '(0.9, 0.98)' "
              "--lr-scheduler polynomial_decay --total-num-update 1000000 --warmup-updates 1000 "
              "--weight-decay 0.0 --ddp-backend no_c10d --max-epoch 10 "
              "--finetune-from-model runs/retri/videoclip/pretrained/checkpoint_best.pt "
              "--save-dir runs/retri/videoclip --save-interval-updates 1024 --keep-interval-updates 2 "
              "--keep-last-epochs 30")
CROSSTASK_FLAGS = ("--tensorboard-logdir runs/retri/videoclip/crosstask/run_0 --log-interval 1000 --fp16 "
                   "--num-workers 4 --batch-size 1 --lr 5e-05 --clip-norm 2.0 --optimizer adam "
                   "--adam-betas '(0.9, 0.98)' --lr-scheduler polynomial_decay --total-num-update 1000000 "
                   "--warmup-updates 122 --weight-decay 0.0 --ddp-backend no_c10d --max-epoch 20 "
                   "--restore-file runs/retri/videoclip/pretrained/checkpoint_best.pt --reset-optimizer "
                   "--reset-dataloader --reset-meters --save-dir runs/retri/videoclip/crosstask")
TEST_CONFIGS = ["test_crosstask.yaml", "test_crosstask_zs.yaml", "test_youcook_zs.yaml",
                "test_youcook_fullvideo_zs.yaml", "test_youcook_fullvideo_bg_zs.yaml"]


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)


def command(config, jobtype, cuda, monkeypatch):
    monkeypatch.setattr(localjob, "_cuda_available", lambda: cuda)
    return " ".join(shlex.quote(c) for c in LocalJob(config, jobtype, dryrun=True).command())


@pytest.mark.parametrize("config,flags", [("configs/how2.yaml", HOW2_FLAGS),
                                          ("configs/crosstask.yaml", CROSSTASK_FLAGS)])
def test_training_configs_match_reference_on_gpu(in_repo, monkeypatch, config, flags):
    assert command(config, "local_single", True, monkeypatch) == PREFIX.format(config) + " " + flags


@pytest.mark.parametrize("config,flags", [("configs/how2.yaml", HOW2_FLAGS),
                                          ("configs/crosstask.yaml", CROSSTASK_FLAGS)])
def test_cpu_adaptation(in_repo, monkeypatch, capsys, config, flags):
    expected = PREFIX.format(config) + " " + flags.replace(" --fp16", "") + " --cpu"
    assert command(config, "local_single", False, monkeypatch) == expected
    assert "--fp16 dropped" in capsys.readouterr().err


@pytest.mark.parametrize("jobtype,world", [("local_small", 2), ("local_big", 8)])
def test_world_size_job_types(in_repo, monkeypatch, jobtype, world):
    monkeypatch.setattr(localjob, "_cuda_device_count", lambda: 8)
    assert command("configs/how2.yaml", jobtype, True, monkeypatch).endswith(f"--distributed-world-size {world}")


def test_sweep_task_type_without_jobtype_runs_single(in_repo, monkeypatch):
    # configs/how2.yaml has task_type: sweep_big; the original raised KeyError: 'sweep'
    assert command("configs/how2.yaml", None, True, monkeypatch) == PREFIX.format("configs/how2.yaml") + " " + HOW2_FLAGS


@pytest.mark.parametrize("name", TEST_CONFIGS)
def test_predict_configs(in_repo, monkeypatch, name):
    path = f"configs/{name}"
    assert_classes_resolve(path)  # a predict command for a config whose classes do not exist would be a lie
    assert command(path, None, False, monkeypatch) == f"{shlex.quote(sys.executable)} tempclr_cli/predict.py {path}"


def test_false_binary_flags_are_not_emitted(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text(f"fairseq:\n  common:\n    fp16: false\n  checkpoint:\n    reset_optimizer: false\n"
                      f"    reset_meters: true\n    save_dir: {tmp_path / 's'}\n")
    cmd = command(str(config), "local_single", True, monkeypatch)
    assert "--fp16" not in cmd and "--reset-optimizer" not in cmd and "--reset-meters" in cmd


def test_any_true_false_value_is_a_flag(tmp_path, monkeypatch):
    """fairseq's boolean options are store-true flags: ``--disable-validation True`` would be an argparse error."""
    config = tmp_path / "c.yaml"
    config.write_text(f"fairseq:\n  dataset:\n    disable_validation: true\n    skip_invalid_size_inputs_valid_test: "
                      f"false\n  checkpoint:\n    save_dir: {tmp_path / 's'}\n")
    cmd = command(str(config), "local_single", True, monkeypatch)
    assert " --disable-validation " in cmd + " " and "True" not in cmd and "skip-invalid" not in cmd


def test_unknown_jobtype_is_an_error(in_repo):
    with pytest.raises(ValueError, match="local_single"):
        LocalJob("configs/how2.yaml", "sweep_big", dryrun=True)


def test_dryrun_cli_writes_nothing(tmp_path):
    """`--dryrun` on a copy of the repo's config tree leaves the tree unchanged."""
    before = sorted(os.listdir(ROOT))
    runs_before = sorted(os.listdir(os.path.join(ROOT, "runs")))
    out = subprocess.run([sys.executable, "locallaunch.py", "configs/how2.yaml", "--jobtype", "local_single",
                          "--dryrun"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.startswith("launching fairseq-train configs/how2.yaml")
    assert sorted(os.listdir(ROOT)) == before
    assert sorted(os.listdir(os.path.join(ROOT, "runs"))) == runs_before


def test_missing_task_type_is_classified_by_what_the_config_holds(tmp_path, monkeypatch):
    """A test config without ``task_type`` runs the predict script (it used to launch fairseq-train, fail with
    "split 'train' has no data" and create ./checkpoints); a training job type for it is a clear error and the run
    writes nothing."""
    monkeypatch.chdir(tmp_path)
    text = open(os.path.join(ROOT, "configs", "test_crosstask_zs.yaml")).read().replace("task_type: local_predict\n",
                                                                                         "")
    (tmp_path / "test_no_type.yaml").write_text(text)
    job = LocalJob("test_no_type.yaml", None, dryrun=True)
    assert job.job_type == "local_predict" and job.command()[1:] == [os.path.join("tempclr_cli", "predict.py"),
                                                                     "test_no_type.yaml"]
    with pytest.raises(ValueError, match=r"^test_no_type.yaml is an evaluation config \(dataset.split: test / "
                                         r"predictor / metric\) but the job type is local_single; run it with "
                                         r"--jobtype local_predict$"):
        LocalJob("test_no_type.yaml", "local_single")
    training = open(os.path.join(ROOT, "configs", "how2.yaml")).read().replace("task_type: sweep_big\n", "")
    (tmp_path / "train_no_type.yaml").write_text(training)
    assert LocalJob("train_no_type.yaml", None, dryrun=True).job_type == "local_single"
    with pytest.raises(ValueError, match=r"^bad.yaml: 'task_type: local_dual' is not a job type"):
        (tmp_path / "bad.yaml").write_text(training + "task_type: local_dual\n")
        LocalJob("bad.yaml", None, dryrun=True)
    assert sorted(os.listdir(tmp_path)) == ["bad.yaml", "test_no_type.yaml", "train_no_type.yaml"]
