"""tempclr_cli/predict.py end to end on the small demo's CrossTask release: the checkpoint sweep, the best pick
by maximum, and the note on which split selected it."""
import os

import pytest
import torch

from conftest import ROOT
from tempclr_cli import predict


def write_config(tmp_path, data, checkpoint, test_videos=None):
    """A test config on the small demo's CrossTask release; ``test_videos`` keeps only the first that many rows
    of the test csv."""
    path = tmp_path / "test_sweep.yaml"
    release = f"{data}/crosstask/crosstask_release"
    test_csv = f"{release}/videos_val.csv"
    if test_videos is not None:
        with open(test_csv) as f:
            rows = f.readlines()[:test_videos]
        test_csv = str(tmp_path / "videos_test.csv")
        with open(test_csv, "w") as f:
            f.writelines(rows)
    path.write_text(f"""includes: {ROOT}/configs/demo/test_crosstask.yaml
dataset:
  bert_name: {data}/bert
  test_path: {test_csv}
  train_csv_path: {release}/videos.csv
  val_path: {release}/videos_val.csv
  val_csv_path: {release}/videos_val.csv
  primary_path: {release}/tasks_primary.txt
  related_path: {release}/tasks_related.txt
  vfeat_dir: {data}/crosstask/features
  annotation_path: {release}/annotations
fairseq:
  dataset:
    num_workers: 0
  common_eval:
    path: {checkpoint}
eval:
  save_path: {tmp_path / 'ckpt' / 'eval'}
""")
    return str(path)


@pytest.mark.slow
def test_sweep_picks_the_maximum_and_names_the_split(tmp_path, small_demo, capsys):
    from tempclr.tasks.task import Task
    from tempclr.utils.load_config import load_config

    folder = tmp_path / "ckpt"
    folder.mkdir()
    config_path = write_config(tmp_path, small_demo, folder / "checkpoint_last.pt")
    task = Task.config_task(load_config(config_file=config_path))
    for name, seed in (("checkpoint1.pt", 1), ("checkpoint_last.pt", 2)):
        torch.manual_seed(seed)
        model = task.build_model()
        for parameter in model.parameters():  # different random weights per checkpoint
            parameter.data.normal_(0, 0.5)
        torch.save({"model": model.state_dict()}, folder / name)
    assert predict.main([config_path]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    recalls = [float(line.split()[-1]) for line in lines if line.startswith("Recall:")]
    evaluated = [line.split(" ", 1)[1] for line in lines if line.startswith("evaluating ")]
    assert evaluated == [str(folder / "checkpoint1.pt"), str(folder / "checkpoint_last.pt")]
    assert len(recalls) == 3  # two checkpoints, then the best again
    assert recalls[0] != recalls[1]  # the two random checkpoints score differently, so the pick is meaningful
    best = evaluated[recalls.index(max(recalls[:2]))]
    header = next(i for i, line in enumerate(lines) if line.startswith("best results"))
    assert lines[header].startswith("best results (selected on split 'test'")
    assert lines[header + 1].startswith("WARNING: this checkpoint was selected on the test split")
    assert lines[header + 2] == best and recalls[2] == max(recalls[:2])
    assert os.path.isfile(folder / "eval" / "merged.pkl") and os.path.isfile(folder / "eval" / "checkpoint1_merged.pkl")


def test_best_checkpoint_path_skips_the_sweep(tmp_path, small_demo):
    from tempclr.utils.load_config import load_config

    config = load_config(config_file=write_config(tmp_path, small_demo, tmp_path / "ckpt" / "checkpoint_best.pt"))
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "checkpoint3.pt").write_bytes(b"")
    assert predict.checkpoints_to_evaluate(config) == [str(tmp_path / "ckpt" / "checkpoint_best.pt")]


def test_predict_needs_only_the_bert_config_and_vocabulary(tmp_path, small_demo, capsys):
    """The default tier's predict run (one test video): tempclr-predict end to end."""
    import shutil

    from tempclr.tasks.task import Task
    from tempclr.utils.load_config import load_config

    folder = tmp_path / "ckpt"
    folder.mkdir()
    config_path = write_config(tmp_path, small_demo, folder / "checkpoint_best.pt", test_videos=1)
    trained = Task.config_task(load_config(config_file=config_path))
    torch.save({"model": trained.build_model().state_dict()}, folder / "checkpoint_best.pt")
    weightless = tmp_path / "bert_no_weights"
    weightless.mkdir()
    for name in os.listdir(f"{small_demo}/bert"):
        if not name.endswith((".safetensors", ".bin")):
            shutil.copy(f"{small_demo}/bert/{name}", weightless / name)
    weightless_config = tmp_path / "test_weightless.yaml"
    weightless_config.write_text(open(config_path).read().replace(f"bert_name: {small_demo}/bert",
                                                                  f"bert_name: {weightless}"))
    assert "config.json" in os.listdir(weightless) and "model.safetensors" not in os.listdir(weightless)
    assert predict.main([str(weightless_config)]) == 0
    assert f"evaluating {folder / 'checkpoint_best.pt'}" in capsys.readouterr().out
