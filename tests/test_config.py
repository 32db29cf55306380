"""Config loading: includes stacking, missing keys, load_config side effects."""
import os

import pytest
from omegaconf import OmegaConf
from test_registry import assert_classes_resolve

from tempclr.utils.load_config import cfg_get, load_config, next_run_dir, recursive_config


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_includes_stack_any_depth_child_wins(tmp_path):
    write(tmp_path / "base.yaml", "a: 1\nnested:\n  x: 1\n  y: 1\n  deep:\n    k: base\nlist: [1, 2]\n")
    write(tmp_path / "mid.yaml", "includes: base.yaml\nnested:\n  y: 2\n  deep:\n    k: mid\nb: mid\n")
    top = write(tmp_path / "sub" / "top.yaml", f"includes: {tmp_path / 'mid.yaml'}\nnested:\n  x: 3\nlist: [9]\n")
    config = recursive_config(top)
    assert config.a == 1 and config.b == "mid"
    assert config.nested.x == 3 and config.nested.y == 2 and config.nested.deep.k == "mid"
    assert list(config.list) == [9]
    assert "includes" not in config


def test_includes_missing_file_is_named(tmp_path):
    top = write(tmp_path / "top.yaml", "includes: nowhere.yaml\n")
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        recursive_config(top)


def test_cfg_get_missing_and_null_keys():
    config = OmegaConf.create({"dataset": {"bert_name": "x", "use_fast": None}, "n": 0})
    assert cfg_get(config, "dataset.bert_name") == "x"
    assert cfg_get(config, "dataset.use_fast") is None
    assert cfg_get(config, "dataset.nothing") is None
    assert cfg_get(config, "nosection.key", 5) == 5
    assert cfg_get(config, "n", 7) == 0  # falsy values are values, not missing


def test_next_run_dir(tmp_path):
    assert next_run_dir(str(tmp_path), "run") == str(tmp_path / "run_0")
    (tmp_path / "run_0").mkdir()
    (tmp_path / "run_3").mkdir()
    (tmp_path / "runner_9").mkdir()
    assert next_run_dir(str(tmp_path), "run") == str(tmp_path / "run_4")


def training_config(tmp_path):
    return write(tmp_path / "train.yaml", f"""dataset:
  subsampling: 4
fairseq:
  common:
    tensorboard_logdir: run
  dataset:
    batch_size: 32
  checkpoint:
    save_dir: {tmp_path / 'save'}
""")


def test_load_config_writes_run_dir_and_config(tmp_path):
    config = load_config(config_file=training_config(tmp_path))
    assert config.fairseq.dataset.batch_size == 8
    assert config.fairseq.common.tensorboard_logdir == str(tmp_path / "save" / "run_0")
    saved = OmegaConf.load(tmp_path / "save" / "config.yaml")
    assert saved.fairseq.dataset.batch_size == 8


def test_load_config_dryrun_writes_nothing(tmp_path):
    config = load_config(config_file=training_config(tmp_path), dryrun=True)
    assert config.fairseq.common.tensorboard_logdir == str(tmp_path / "save" / "run_0")
    assert not os.path.exists(tmp_path / "save")


def test_training_config_needs_save_dir(tmp_path):
    path = write(tmp_path / "t.yaml", "dataset:\n  train_path: x\n")
    with pytest.raises(ValueError, match="save_dir"):
        load_config(config_file=path)


def test_test_config_writes_nothing(tmp_path):
    path = write(tmp_path / "t.yaml", f"dataset:\n  split: test\nfairseq:\n  checkpoint:\n    save_dir: {tmp_path / 's'}\n")
    load_config(config_file=path)
    assert not os.path.exists(tmp_path / "s")


def test_missing_dataset_path_names_key_and_fix(tmp_path):
    from tempclr.tasks.task import check_dataset_paths

    config = OmegaConf.create({"meta_processor": "CrossTaskMetaProcessor", "test_path": str(tmp_path / "v.csv"),
                               "train_path": "not/checked/for/test.csv"})
    with pytest.raises(FileNotFoundError, match=r"dataset.test_path: .*v.csv does not exist.*CrossTask release"):
        check_dataset_paths(config, "test")
    (tmp_path / "v.csv").write_text("")
    config.vfeat_dir = str(tmp_path / "features")
    with pytest.raises(FileNotFoundError, match=r"dataset.vfeat_dir: .*features does not exist.*S3D features"):
        check_dataset_paths(config, "test")
    (tmp_path / "features").mkdir()
    check_dataset_paths(config, "test")


def test_seed_test_configs_use_relative_data_paths():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in os.listdir(os.path.join(root, "configs")):
        if name.endswith(".yaml"):
            text = open(os.path.join(root, "configs", name)).read()
            assert ": /data" not in text, name  # the original test_crosstask_zs.yaml had /data/crosstask/...
            assert_classes_resolve(f"configs/{name}")
