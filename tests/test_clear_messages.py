"""Cases that used to fail with a library's or the OS's message and no file or key named: a full disk during a
checkpoint save or a feature write, a ``bert_name`` folder that does not exist, an empty config, ``split: tset``,
an unknown ``fairseq.*`` option, a truncated ``.npy`` in ``tempclr-check``."""
import contextlib
import errno
import os
import re
import resource
import shutil
import signal

import numpy as np
import pytest
import torch

from conftest import ROOT, small_demo_config
from tempclr.tasks.fairseq_checkpoint_io import torch_persistent_save_atomic
from tempclr.utils.config_schema import ConfigError
from tempclr.utils.fileio import atomic_path, save_npy_atomic
from tempclr.utils.load_config import read_config
from tempclr.utils.shardedtensor import write_sharded
from tempclr_cli import check_data

NO_SPACE = ("could not be written ({}): the disk holding {} is full, or a quota or file-size limit was reached; "
            "nothing was replaced (an earlier file of that name is unchanged). Free space there or write elsewhere, "
            "then run again")


@contextlib.contextmanager
def file_size_limit(limit_bytes):
    """A real limit on how large this process may grow a file (``RLIMIT_FSIZE``): a write past it fails with
    ``EFBIG`` from the kernel, as a full disk fails with ``ENOSPC``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # the default action would kill the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_full_device_names_the_file_and_keeps_the_old_one(tmp_path):
    """``/dev/full`` answers every write with ``ENOSPC``, as a full disk does."""
    target = tmp_path / "features.npy"
    save_npy_atomic(str(target), np.zeros(3, np.float32))
    before = target.read_bytes()
    with pytest.raises(OSError) as info:
        with atomic_path(str(target), suffix=".npy"), open("/dev/full", "wb") as full:
            np.save(full, np.ones((256, 512), np.float32))
    assert info.value.errno == errno.ENOSPC
    assert str(info.value) == (f"[Errno {errno.ENOSPC}] {target}: "
                               + NO_SPACE.format(os.strerror(errno.ENOSPC), tmp_path))
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["features.npy"]


def test_checkpoint_save_past_the_file_size_limit_names_the_checkpoint(tmp_path):
    path = tmp_path / "checkpoint_last.pt"
    torch_persistent_save_atomic({"model": {"w": torch.zeros(4)}}, str(path))
    before = path.read_bytes()
    with file_size_limit(1 << 20), pytest.raises(OSError) as info:
        torch_persistent_save_atomic({"model": {"w": torch.zeros(1 << 20)}}, str(path))   # 4 MiB of weights
    assert info.value.errno == errno.EFBIG
    assert str(info.value).startswith(f"[Errno {errno.EFBIG}] {path}: could not be written (")
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["checkpoint_last.pt"]


def test_feature_shard_write_past_the_file_size_limit_names_the_file(tmp_path):
    arrays = [np.ones((1024, 512), np.float16) for _ in range(4)]                         # 4 MiB
    with file_size_limit(1 << 20), pytest.raises(OSError) as info:
        write_sharded(str(tmp_path / "train_0"), [1024] * 4, (512,), np.float16, iter(arrays))
    assert info.value.errno == errno.EFBIG
    assert str(info.value).startswith(f"[Errno {errno.EFBIG}] {tmp_path / 'train_0_data.npy'}: could not be written")
    assert os.listdir(tmp_path) == []


def test_a_bert_name_folder_that_does_not_exist(tmp_path, small_demo):
    from tempclr.processors.processor import get_tokenizer
    from tempclr.tasks.task import Task
    from tempclr.utils.load_config import load_config

    missing = tmp_path / "models" / "bert-tiny"
    config = small_demo_config(tmp_path, small_demo, tmp_path / "save")
    with open(config) as f:
        text = f.read().replace(f"bert_name: {small_demo}/bert", f"bert_name: {missing}")
    with open(config, "w") as f:
        f.write(text)
    expected = (f"dataset.bert_name: the folder {missing} does not exist; point it at a folder holding the BERT's "
                "config.json and vocab.txt, or at a hub model name such as bert-base-uncased")
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(expected)}"):
        Task.config_task(load_config(config_file=config, dryrun=True)).build_model()
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(expected)}"):
        get_tokenizer(str(missing))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"^dataset\.bert_name: .*afile is a file, not a folder"):
        get_tokenizer(str(tmp_path / "afile"))


def test_empty_config_and_split_tset(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(empty))}: the config file is empty \(or holds only "
                                         r"comments\); write the run's keys in it"):
        read_config(config_file=str(empty))
    typo = tmp_path / "typo.yaml"
    typo.write_text(f"includes: {ROOT}/configs/demo/test_youcook_zs.yaml\ndataset:\n  split: tset\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(typo))}: dataset.split: must be one of train, valid, "
                                          r"test, got 'tset'; did you mean test\?$"):
        read_config(config_file=str(typo))


def test_unknown_fairseq_option_is_ours_to_report(tmp_path):
    from tempclr.utils.config_schema import fairseq_option_names

    names = fairseq_option_names()
    # read from fairseq's parsers: core options, and those of every optimizer and scheduler
    assert {"max_update", "save_dir", "lr", "adam_betas", "warmup_updates", "total_num_update", "path"} <= names
    typo = tmp_path / "typo.yaml"
    typo.write_text(f"includes: {ROOT}/configs/demo/how2.yaml\nfairseq:\n  optimization:\n    warmup_update: 10\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(typo))}: fairseq.optimization.warmup_update: not an "
                                          r"option of fairseq-train \(it would fail there as an unrecognized "
                                          r"argument\); did you mean warmup_updates\?$"):
        read_config(config_file=str(typo))


def test_check_names_a_truncated_shard_file(tmp_path, small_demo, capsys):
    demo = tmp_path / "demo"
    shutil.copytree(small_demo, demo)
    data = demo / "feat" / "feat_how2_s3d_shard" / "val_0_data.npy"
    data.write_bytes(data.read_bytes()[:-4096])
    config = small_demo_config(tmp_path, demo, tmp_path / "save")
    assert check_data.main([config]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[valid]")]
    assert lines[0].startswith(f"[valid] {data}: truncated: its header declares float16 (")
    assert "build the shards with scripts/shard_feature.py" in lines[0]
