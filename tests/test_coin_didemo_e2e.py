"""The COIN and DiDeMo configs end to end on the demo benchmark sets (scripts/make_demo_benchmarks.py): the
launcher's local_predict command (tempclr_cli/predict.py) runs in this process on a checkpoint of the demo's
model, and COIN fine-tuning runs two updates of fairseq-train (slow tier)."""
import os
import re
import subprocess
import sys

import pytest
import torch


from conftest import ROOT, load_script, small_demo_config


@pytest.fixture(scope="module")
def bench_sets(small_demo, tmp_path_factory):
    """The demo benchmark sets written by the real script beside a copy-free reference to the small demo's BERT."""
    out = tmp_path_factory.mktemp("bench") / "demo"
    load_script("make_demo_benchmarks").make_demo_benchmarks(str(out), seed=0)
    return str(out)


def demo_config(tmp_path, name, small_demo, bench, extra="", base="demo"):
    """``configs/<base>/<name>.yaml`` (the demo config, or the original's under ``videoclip``) pointed at the
    test's data, BERT and checkpoint folder (and the demo's 2 video layers)."""
    dataset = "coin" if "coin" in name else "didemo"
    paths = {"coin": f"  test_path: {bench}/coin/COIN.json\n  vfeat_dir: {bench}/coin/features\n",
             "didemo": f"  test_path: {bench}/didemo/test_data.json\n  vfeat_dir: {bench}/didemo/features\n"}
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""includes: {ROOT}/configs/{base}/{name}.yaml
dataset:
  bert_name: {small_demo}/bert
{paths[dataset]}fairseq:
  dataset:
    num_workers: 0
  common_eval:
    path: {tmp_path}/ckpt/checkpoint_best.pt
model:
  num_hidden_video_layers: 2
eval:
  save_path: {tmp_path}/ckpt/eval
{extra}""")
    return str(path)


def save_checkpoint(config_path, seed=0):
    from tempclr.tasks.task import Task
    from tempclr.utils.load_config import load_config

    config = load_config(config_file=config_path)
    torch.manual_seed(seed)
    model = Task.config_task(config).build_model()
    folder = os.path.dirname(str(config.fairseq.common_eval.path))
    os.makedirs(folder, exist_ok=True)
    torch.save({"model": model.state_dict()}, str(config.fairseq.common_eval.path))


def run_predict(config_path, monkeypatch):
    from tempclr_cli import predict
    from tempclr_cli.localjob import LocalJob

    monkeypatch.chdir(ROOT)
    command = LocalJob(config_path, "local_predict").command()
    assert command[1:] == [os.path.join("tempclr_cli", "predict.py"), config_path]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert predict.main(command[2:]) == 0
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("base", ["demo", "videoclip"])
def test_coin_zero_shot_config_end_to_end(tmp_path, small_demo, bench_sets, monkeypatch, capsys, base):
    config = demo_config(tmp_path, "test_coin_zs", small_demo, bench_sets, base=base)
    save_checkpoint(config)
    run_predict(config, monkeypatch)
    out = capsys.readouterr().out
    assert "COIN: 1 video(s) of subset 'testing' dropped: no feature file" in out
    assert "COIN: 1 segment(s) dropped: they start at or after the end of the video's features" in out
    accuracy = [float(line.split()[-1]) for line in out.splitlines() if line.startswith("frame accuracy:")]
    assert len(accuracy) == 1 and 0.0 <= accuracy[0] <= 1.0
    assert "frame accuracy without background:" in out and "predicted background share:" in out
    assert re.search(r"^step accuracy over the annotated seconds \(best step, background not allowed\): [0-9.]+$",
                     out, re.M)
    from tempclr.utils.safe_pickle import load_pickle

    saved = load_pickle(str(tmp_path / "ckpt" / "eval" / "merged.pkl"))
    assert saved["Y_pred"].shape == saved["Y_true"].shape and saved["Y_true"].max() > 0


@pytest.mark.parametrize("base, compat", [("demo", None), ("videoclip", None), ("demo", "original")])
def test_didemo_zero_shot_config_end_to_end(tmp_path, small_demo, bench_sets, monkeypatch, capsys, base, compat):
    extra = f"  metric_compat: {compat}\n" if compat else ""
    config = demo_config(tmp_path, "test_didemo_zs", small_demo, bench_sets, base=base, extra=extra)
    save_checkpoint(config)
    run_predict(config, monkeypatch)
    out = capsys.readouterr().out
    assert re.search(r"DiDeMo: \d+ description\(s\) of 1 video\(s\) dropped: no feature file", out)
    line = next(line for line in out.splitlines() if line.startswith("Average rank@1:"))
    values = [float(v) for v in line.replace("Average rank@1:", "").replace("Average rank@5:", "")
              .replace("Average iou:", "").split()]
    assert all(0.0 <= v <= 1.0 for v in values) and values[0] <= values[1]
    how = "skipped, as the original did" if compat else "ranked last (21), counted"
    assert f"annotated moment(s) lie past their video's features: {how}" in out
    import numpy as np

    from tempclr.evaluators import Evaluator
    from tempclr.utils.load_config import load_config

    saved = Evaluator(load_config(config_file=config))()["results"]  # re-scores eval/merged.pkl
    assert [round(saved[k], 4) for k in ("rank1", "rank5", "miou")] == values
    from tempclr.utils.safe_pickle import load_pickle

    scores = load_pickle(str(tmp_path / "ckpt" / "eval" / "merged.pkl"))["scores"]
    assert scores.shape[1] == 21 and np.isneginf(scores).any()  # the 22-second video's chunk 5 has no features


def launch(config, jobtype="local_single"):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "locallaunch.py", config, "--jobtype", jobtype], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_coin_fine_tuning_from_videoclip(tmp_path, small_demo, bench_sets):
    """configs/videoclip/coin_videoclip.yaml on the demo through the launcher (real fairseq-train processes):
    restore a demo VideoCLIP checkpoint (2 pretraining updates, no classifier), fine-tune
    MMFusionSeparateActionSegmentation for two updates, then test_coin_videoclip.yaml evaluates it."""
    pretrain_dir = tmp_path / "videoclip"
    pretrain = tmp_path / "pretrain.yaml"
    pretrain.write_text(f"includes: {small_demo_config(tmp_path, small_demo, pretrain_dir)}\nfairseq:\n"
                        "  optimization:\n    max_update: 2\n  dataset:\n    disable_validation: true\n")
    run = launch(str(pretrain))
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    save_dir = tmp_path / "coin"
    config = tmp_path / "coin_videoclip.yaml"
    config.write_text(f"""includes: {ROOT}/configs/videoclip/coin_videoclip.yaml
dataset:
  bert_name: {small_demo}/bert
  train_path: {bench_sets}/coin/COIN.json
  val_path: {bench_sets}/coin/COIN.json
  vfeat_dir: {bench_sets}/coin/features
fairseq:
  common:
    fp16: false
    log_interval: 1
    tensorboard_logdir: null
  dataset:
    num_workers: 0
  optimization:
    max_update: 2
  checkpoint:
    restore_file: {pretrain_dir}/checkpoint_last.pt
    save_dir: {save_dir}
model:
  num_hidden_video_layers: 2
  num_labels: 44
""")
    run = launch(str(config))
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert "new-head tensors start from their initialisation" in log, log[-3000:]
    assert "the valid split is the testing subset" in log
    assert re.findall(r"num_updates=(\d+)", log)[-1] == "2", log[-3000:]
    state = torch.load(save_dir / "checkpoint_last.pt", map_location="cpu", weights_only=True)
    assert state["model"]["mmmodel.video_encoder.classifier.weight"].shape[0] == 44
    test = tmp_path / "test_coin_videoclip.yaml"
    test.write_text(f"""includes: {ROOT}/configs/videoclip/test_coin_videoclip.yaml
dataset:
  bert_name: {small_demo}/bert
  test_path: {bench_sets}/coin/COIN.json
  vfeat_dir: {bench_sets}/coin/features
fairseq:
  dataset:
    num_workers: 0
  common_eval:
    path: {save_dir}/checkpoint_best.pt
model:
  num_hidden_video_layers: 2
  num_labels: 44
eval:
  save_path: {save_dir}/eval
""")
    run = launch(str(test), "local_predict")
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert re.search(r"^frame accuracy: [0-9.]+$", log, re.M) and "predicted background share" in log, log[-3000:]
    assert "COIN has no validation subset, so fine-tuning selected it on the testing subset" in log


def test_demo_sets_are_deterministic_and_never_replace_other_folders(tmp_path):
    from tempclr.demo.coin import write_coin_set
    from tempclr.demo.didemo import write_didemo_set
    from tempclr.demo.world import World

    world = World(0)
    first = write_coin_set(world, str(tmp_path / "a" / "coin"), train_per_task=1, test_per_task=1)
    write_coin_set(world, str(tmp_path / "b" / "coin"), train_per_task=1, test_per_task=1)
    assert (tmp_path / "a" / "coin" / "COIN.json").read_bytes() == (tmp_path / "b" / "coin" / "COIN.json").read_bytes()
    assert not (tmp_path / "a" / "coin" / "features" / f"{first['missing_video']}.npy").exists()
    write_didemo_set(world, str(tmp_path / "a" / "didemo"), videos_per_task=1)
    write_didemo_set(world, str(tmp_path / "a" / "didemo"), videos_per_task=1)  # a demo set is replaced
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    for write in (write_coin_set, write_didemo_set):
        with pytest.raises(FileExistsError, match="is not a demo"):
            write(world, str(foreign))
    assert (foreign / "notes.txt").read_text() == "keep me"
