"""Broken data is reported with the file and the fix: truncated .npy files, offsets and shard sizes that do not
match, captions that end before they start or lie past the video, NaN/inf features, features of the wrong width;
and ``check_data`` lists every problem of a broken copy of the demo data."""
import pickle
import re

import numpy as np
import pytest
import torch

from conftest import small_demo_config
from tempclr.tasks.task import Task
from tempclr.utils.fileio import npy_problem
from tempclr.utils.load_config import load_config
from tempclr.utils.shardedtensor import ShardedTensor
from tempclr_cli import check_data

SHARD = "feat/feat_how2_s3d_shard"
TEXT = "raw_caption_dedup.demo."


def train_items(tmp_path, data):
    config = load_config(config_file=small_demo_config(tmp_path, data, tmp_path / "save"), dryrun=True)
    dataset = Task.config_task(config).build_mmdataset("train")
    return [dataset[i] for i in range(len(dataset))]


def rewrite(path, transform):
    array = np.load(path)
    np.save(path, transform(array))


def test_truncated_npy_is_named_before_anything_is_read(demo_copy, tmp_path):
    data_path = demo_copy / SHARD / "train_1_data.npy"
    raw = data_path.read_bytes()
    data_path.write_bytes(raw[: len(raw) - 4096])
    assert re.match(r"truncated: its header declares float16 \(\d+, 512\) \(\d+ bytes of data\) but the file holds "
                    r"\d+$", npy_problem(str(data_path)))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(data_path))} is truncated: .*; re-create the shard"):
        ShardedTensor.load(str(demo_copy / SHARD / "train_1"))
    (demo_copy / "empty.npy").write_bytes(b"\x93NUMPY garbage")
    assert npy_problem(str(demo_copy / "empty.npy")).startswith("not a readable .npy file")


def test_offsets_one_entry_short(demo_copy, tmp_path):
    starts = demo_copy / SHARD / "train_0_starts.npy"
    rewrite(starts, lambda s: s[:-1])
    with pytest.raises(ValueError, match=rf"^{re.escape(str(starts))}: starts\[-1\]=\d+ does not equal the number "
                                         r"of data rows \d+"):
        train_items(tmp_path, demo_copy)


def test_caption_shard_of_another_size_than_the_meta(demo_copy, tmp_path):
    """Caption shards built for another set of videos: one video fewer in caption shard 1."""
    text = demo_copy / SHARD / f"{TEXT}train_1.startends"
    tensor = ShardedTensor.load(str(text), mmap_mode=None)
    ShardedTensor.from_list([tensor[i].copy() for i in range(len(tensor) - 1)]).save(str(text))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(text))}_starts\.npy holds 7 items but the shard meta "
                                         r"lists 8 videos in shard 1: the files are from different runs; re-run "
                                         r"scripts/pretokenization.py"):
        train_items(tmp_path, demo_copy)


def _break_caption(demo_copy, video_row, transform):
    prefix = demo_copy / SHARD / f"{TEXT}train_0.startends"
    tensor = ShardedTensor.load(str(prefix), mmap_mode=None)
    items = [tensor[i].copy() for i in range(len(tensor))]
    items[video_row] = transform(items[video_row])
    ShardedTensor.from_list(items).save(str(prefix))
    with open(demo_copy / SHARD / "train_meta.pkl", "rb") as f:
        return pickle.load(f)[0][video_row]


def test_caption_that_ends_before_it_starts(demo_copy, tmp_path):
    def swap(se):
        se[2] = se[2, ::-1] + np.array([0.0, -1.0], np.float32)
        return se

    video = _break_caption(demo_copy, 3, swap)
    with pytest.raises(ValueError, match=rf"^video {video}: caption 2 ends before it starts .* in .*train_0"
                                         r"\.startends; fix the caption file and re-run scripts/pretokenization.py"):
        train_items(tmp_path, demo_copy)


def test_captions_past_the_video(demo_copy, tmp_path):
    video = _break_caption(demo_copy, 5, lambda se: se + np.float32(10_000))
    with pytest.raises(ValueError, match=rf"^video {video}: caption 0 starts at \d+ s but the video has \d+ s of "
                                         r"features; the caption shards \(tfeat_dir\) and the video shards"):
        train_items(tmp_path, demo_copy)


def test_nan_features_name_the_video_and_the_file(demo_copy, tmp_path):
    data = demo_copy / SHARD / "train_1_data.npy"
    starts = np.load(demo_copy / SHARD / "train_1_starts.npy")
    rewrite(data, lambda a: np.where(np.arange(len(a))[:, None] == starts[2] + 1, np.float16("nan"), a))
    with open(demo_copy / SHARD / "train_meta.pkl", "rb") as f:
        video = pickle.load(f)[1][2]
    with pytest.raises(ValueError, match=rf"^video {video}: NaN or inf in its features \(second 1\) in "
                                         rf"{re.escape(str(data))}; re-extract its features"):
        train_items(tmp_path, demo_copy)


def test_features_of_the_wrong_width(tmp_path, small_demo):
    config = load_config(config_file=small_demo_config(tmp_path, small_demo, tmp_path / "save"), dryrun=True)
    task = Task.config_task(config)
    model = task.build_model()
    caps = torch.tensor([[101, 102, 5, 102]])
    with pytest.raises(ValueError, match=r"^video features have 256 values per second but the model's video MLP "
                                         r"takes 512 \(S3D video_embedding\)"):
        model(caps, torch.ones_like(caps, dtype=torch.bool), torch.zeros(1, 32, 256), torch.ones(1, 32, dtype=torch.bool))


def test_check_data_lists_every_problem(demo_copy, tmp_path, capsys):
    config = small_demo_config(tmp_path, demo_copy, tmp_path / "save")
    assert check_data.main([config]) == 0
    assert capsys.readouterr().out.strip().endswith("no problem found")
    _break_caption(demo_copy, 3, lambda se: se[:, ::-1].copy() - np.array([0.0, 1.0], np.float32))
    data = demo_copy / SHARD / "val_0_data.npy"
    starts = np.load(demo_copy / SHARD / "val_0_starts.npy")
    inner = np.ones(starts[-1], bool)          # every row but each video's first and last (their checksums hold)
    inner[starts[:-1]] = inner[starts[1:] - 1] = False
    rewrite(data, lambda a: np.where(inner[:, None], np.float16("inf"), a))
    assert check_data.main([config]) == 1
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    train = [line for line in lines if line.startswith("[train]")]
    valid = [line for line in lines if line.startswith("[valid]")]
    assert len(train) == 1 and "caption 0 ends before it starts" in train[0]
    # validation items are groups of 2 videos (num_video_per_batch): the 8 videos of val shard 0 are 4 items
    assert len(valid) == 4 and all("NaN or inf in its features" in line and str(data) in line for line in valid)
    assert out.strip().endswith(f"{config}: 5 problem(s) found")
    assert not (tmp_path / "save").exists()  # the scan writes nothing
