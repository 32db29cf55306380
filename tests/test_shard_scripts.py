"""tempclr_cli/shard_feature.py and tempclr_cli/pretokenization.py (scripts/ wraps them) on small hand-made inputs."""
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from tempclr.utils.shardedtensor import ShardedTensor
from tempclr_cli import pretokenization, shard_feature

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "crack", "the", "eggs", "now", "a", "b", "##b", "x"]


def _videos(tmp_path: Path, n: int, dim: int = 4) -> tuple[Path, dict]:
    feat_dir = tmp_path / "feat"
    feat_dir.mkdir()
    rng = np.random.default_rng(0)
    videos = {f"vid{i:02d}": rng.standard_normal((int(rng.integers(1, 6)), dim)).astype(np.float16)
              for i in range(n)}
    for video_id, feats in videos.items():
        np.save(feat_dir / f"{video_id}.npy", feats)
    return feat_dir, videos


def _lists(tmp_path: Path, train: list, val: list) -> tuple[str, str]:
    (tmp_path / "train.lst").write_text("".join(v + "\n" for v in train))
    (tmp_path / "val.lst").write_text("\n".join(val) + "\n\n")
    return str(tmp_path / "train.lst"), str(tmp_path / "val.lst")


def test_shard_features_list_order_and_meta(tmp_path):
    feat_dir, videos = _videos(tmp_path, 9)
    train = [f"vid{i:02d}" for i in (6, 0, 3, 1, 8, 2, 4)]
    val = ["vid05", "vid07"]
    shard_dir = tmp_path / "shards"
    metas = shard_feature.shard_features(str(feat_dir), *_lists(tmp_path, train, val), str(shard_dir), shard_size=3)
    assert metas["train"] == {0: train[:3], 1: train[3:6], 2: train[6:]}
    assert metas["val"] == {0: val}
    for split, meta in metas.items():
        with open(shard_dir / f"{split}_meta.pkl", "rb") as f:
            assert pickle.load(f) == meta
        for k, ids in meta.items():
            shard = ShardedTensor.load(str(shard_dir / f"{split}_{k}"))
            for i, video_id in enumerate(ids):
                np.testing.assert_array_equal(shard[i], videos[video_id])
    assert not [p for p in shard_dir.iterdir() if p.name.startswith(".tmp")]


def test_shard_feature_cli(tmp_path, capsys):
    feat_dir, _ = _videos(tmp_path, 3)
    train_list, val_list = _lists(tmp_path, ["vid00", "vid01"], ["vid02"])
    shard_feature.main(["--feat-dir", str(feat_dir), "--train-list", train_list, "--val-list", val_list,
                        "--shard-dir", str(tmp_path / "s")])
    assert "train: 2 videos in 1 shard(s)" in capsys.readouterr().out
    assert len(ShardedTensor.load(str(tmp_path / "s" / "train_0"))) == 2


def test_missing_feature_file_is_named(tmp_path):
    feat_dir, _ = _videos(tmp_path, 2)
    lists = _lists(tmp_path, ["vid00", "vid_gone", "vid01"], ["vid01"])
    with pytest.raises(FileNotFoundError, match=r"vid_gone\.npy") as info:
        shard_feature.shard_features(str(feat_dir), *lists, str(tmp_path / "s"))
    assert "train.lst" in str(info.value)
    assert not (tmp_path / "s").exists(), "shards written before the inputs were checked"


def test_duplicate_id_and_mixed_dims_are_errors(tmp_path):
    feat_dir, _ = _videos(tmp_path, 3)
    with pytest.raises(ValueError, match="'vid01' is listed twice"):
        shard_feature.shard_features(str(feat_dir), *_lists(tmp_path, ["vid01", "vid01"], ["vid02"]),
                                     str(tmp_path / "s"))
    np.save(feat_dir / "vid02.npy", np.zeros((3, 7), np.float16))
    with pytest.raises(ValueError, match=r"vid02\.npy.*\[T, 7\]"):
        shard_feature.shard_features(str(feat_dir), *_lists(tmp_path, ["vid00", "vid02"], ["vid01"]),
                                     str(tmp_path / "s"))


@pytest.fixture()
def tokenizer_dir(tmp_path) -> str:
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in VOCAB))
    return str(folder)


def _sharded_videos(tmp_path: Path) -> Path:
    feat_dir, _ = _videos(tmp_path, 3)
    shard_dir = tmp_path / "shards"
    shard_feature.shard_features(str(feat_dir), *_lists(tmp_path, ["vid00", "vid01"], ["vid02"]), str(shard_dir),
                                 shard_size=1)
    return shard_dir


def _captions() -> dict:
    long_text = "crack " * 40                     # 240 chars: 96-char cut leaves 16 "crack"
    return {
        "vid00": {"start": [0.5, 2.0], "end": [1.5, 4.25], "text": ["now crack the eggs", long_text]},
        "vid01": {"start": [1.0, 3.0, 5.0], "end": [2.0, 4.0, 6.0], "text": [None, "a bb", "crack " * 60]},
        "vid02": {"start": [], "end": [], "text": []},
    }


def test_pretokenize_ids_pad_and_times(tmp_path, tokenizer_dir):
    shard_dir = _sharded_videos(tmp_path)
    (tmp_path / "caps.json").write_text(json.dumps(_captions()))
    counts = pretokenization.pretokenize(str(tmp_path / "caps.json"), tokenizer_dir, str(shard_dir), prefix="p.")
    assert counts == {"train": 5, "val": 0}
    ids = {t: i for i, t in enumerate(VOCAB)}
    caps0 = ShardedTensor.load(str(shard_dir / "p.train_0.caps_ids"))
    times0 = ShardedTensor.load(str(shard_dir / "p.train_0.startends"))
    assert caps0.data.dtype == np.int32 and caps0.data.shape == (2, 32)
    assert times0.data.dtype == np.float32
    np.testing.assert_array_equal(times0[0], [[0.5, 1.5], [2.0, 4.25]])
    assert caps0[0][0].tolist() == [ids["now"], ids["crack"], ids["the"], ids["eggs"]] + [-1] * 28
    assert caps0[0][1].tolist() == [ids["crack"]] * 16 + [-1] * 16, "caption not cut to 96 characters"
    caps1 = ShardedTensor.load(str(shard_dir / "p.train_1.caps_ids"))[0]
    assert caps1[0].tolist() == [-1] * 32, "non-string text must give no tokens"
    assert caps1[1].tolist()[:4] == [ids["a"], ids["b"], ids["##b"], -1]
    assert caps1[2].tolist() == [ids["crack"]] * 16 + [-1] * 16
    val = ShardedTensor.load(str(shard_dir / "p.val_0.caps_ids"))
    assert len(val) == 1 and val[0].shape == (0, 32)


def test_pretokenize_truncates_to_32_tokens(tmp_path, tokenizer_dir):
    shard_dir = _sharded_videos(tmp_path)
    captions = _captions()
    captions["vid00"]["text"][1] = "x " * 48      # 96 chars, 48 tokens
    with open(tmp_path / "caps.pkl", "wb") as f:
        pickle.dump({k: json.dumps(v) for k, v in captions.items()}, f)   # dedup format: id -> json string
    pretokenization.main(["--captions", str(tmp_path / "caps.pkl"), "--tokenizer", tokenizer_dir,
                          "--shard-dir", str(shard_dir)])
    caps = ShardedTensor.load(str(shard_dir / "caps.tok.train_0.caps_ids"))
    assert caps[0][1].tolist() == [VOCAB.index("x")] * 32


def test_pretokenize_errors(tmp_path, tokenizer_dir):
    (tmp_path / "caps.json").write_text(json.dumps(_captions()))
    with pytest.raises(FileNotFoundError, match="shard_feature.py"):
        pretokenization.pretokenize(str(tmp_path / "caps.json"), tokenizer_dir, str(tmp_path / "nowhere"))
    shard_dir = _sharded_videos(tmp_path)
    captions = _captions()
    del captions["vid01"]
    (tmp_path / "caps.json").write_text(json.dumps(captions))
    with pytest.raises(KeyError, match="vid01"):
        pretokenization.pretokenize(str(tmp_path / "caps.json"), tokenizer_dir, str(shard_dir))
    captions = _captions()
    captions["vid00"]["end"].pop()
    (tmp_path / "caps.json").write_text(json.dumps(captions))
    with pytest.raises(ValueError, match="vid00.*lengths"):
        pretokenization.pretokenize(str(tmp_path / "caps.json"), tokenizer_dir, str(shard_dir))


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_failing_shard_run_leaves_the_earlier_set_byte_identical(tmp_path):
    """The issue's case: a new run over an existing shard set whose val list names a video without features."""
    feat_dir, _ = _videos(tmp_path, 6)
    shard_dir = tmp_path / "shards"
    shard_feature.shard_features(str(feat_dir), *_lists(tmp_path, ["vid00", "vid01", "vid02"], ["vid03"]),
                                 str(shard_dir), shard_size=2)
    (shard_dir / "notes.txt").write_text("mine")
    before = _snapshot(shard_dir)
    assert "train_meta_record.npz" in before
    lists = _lists(tmp_path, ["vid04", "vid05"], ["vid_gone"])
    with pytest.raises(FileNotFoundError, match=r"vid_gone\.npy"):
        shard_feature.shard_features(str(feat_dir), *lists, str(shard_dir), shard_size=1)
    # a truncated feature file is found before writing too, named, with the fix
    np.save(feat_dir / "vid03.npy", np.ones((400, 4), np.float16))
    raw = (feat_dir / "vid03.npy").read_bytes()
    (feat_dir / "vid03.npy").write_bytes(raw[:-100])
    with pytest.raises(ValueError, match=rf"1 feature file\(s\) of .*val\.lst cannot be sharded: "
                                         rf"{re.escape(str(feat_dir / 'vid03.npy'))} is truncated: .*re-extract"):
        shard_feature.shard_features(str(feat_dir), *_lists(tmp_path, ["vid04"], ["vid03"]), str(shard_dir))
    assert _snapshot(shard_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir() if ".staging-" in p.name) == []


def test_a_new_shard_set_replaces_the_old_one_as_a_whole(tmp_path):
    feat_dir, videos = _videos(tmp_path, 6)
    shard_dir = tmp_path / "shards"
    shard_feature.shard_features(str(feat_dir), *_lists(tmp_path, ["vid00", "vid01", "vid02"], ["vid03"]),
                                 str(shard_dir), shard_size=1)
    (shard_dir / "notes.txt").write_text("mine")
    shard_feature.shard_features(str(feat_dir), *_lists(tmp_path, ["vid04"], ["vid05"]), str(shard_dir))
    assert sorted(p.name for p in shard_dir.iterdir()) == [
        "notes.txt", "train_0_data.npy", "train_0_starts.npy", "train_meta.pkl", "train_meta_record.npz",
        "val_0_data.npy", "val_0_starts.npy", "val_meta.pkl", "val_meta_record.npz"]
    np.testing.assert_array_equal(ShardedTensor.load(str(shard_dir / "train_0"))[0], videos["vid04"])


@pytest.mark.parametrize("case", ["parent is a file", "not writable"])
def test_an_output_folder_that_cannot_be_written_is_named_first(tmp_path, case):
    feat_dir, _ = _videos(tmp_path, 2)
    lists = _lists(tmp_path, ["vid00"], ["vid01"])
    if case == "parent is a file":
        (tmp_path / "afile").write_text("x")
        shard_dir = tmp_path / "afile" / "shards"
        expected = rf"--shard-dir: {re.escape(str(shard_dir))} cannot be created: .*afile is a file, not a folder"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        shard_dir = locked / "shards"
        expected = rf"--shard-dir: {re.escape(str(shard_dir))} cannot be written: .*locked is not writable"
    with pytest.raises(ValueError, match=expected):
        shard_feature.shard_features(str(feat_dir), *lists, str(shard_dir))


def test_sharding_streams_in_bounded_memory(tmp_path):
    """40 feature files of 1 MiB each (40 MiB) are sharded with a Python-heap peak (tracemalloc, which numpy
    reports its buffers to) below 8 MiB: no list of all arrays is held, each file is read as it is copied."""
    import tracemalloc

    feat_dir = tmp_path / "feat"
    feat_dir.mkdir()
    ids = [f"v{i:02d}" for i in range(40)]
    for i, video_id in enumerate(ids):
        np.save(feat_dir / f"{video_id}.npy", np.full((1024, 256), i, np.float32))   # 1 MiB each
    lists = _lists(tmp_path, ids[:36], ids[36:])
    tracemalloc.start()
    try:
        shard_feature.shard_features(str(feat_dir), *lists, str(tmp_path / "s"), shard_size=64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2 ** 20, f"peak {peak / 2**20:.1f} MiB for 40 MiB of features"
    shard = ShardedTensor.load(str(tmp_path / "s" / "train_0"))
    assert len(shard) == 36 and float(shard[35][0, 0]) == 35.0


def test_a_failing_pretokenize_leaves_the_earlier_caption_shards_byte_identical(tmp_path, tokenizer_dir):
    shard_dir = _sharded_videos(tmp_path)
    (tmp_path / "caps.json").write_text(json.dumps(_captions()))
    pretokenization.pretokenize(str(tmp_path / "caps.json"), tokenizer_dir, str(shard_dir), prefix="p.")
    before = _snapshot(shard_dir)
    captions = _captions()
    del captions["vid02"]                                  # a val video without captions: the case
    captions["vid00"]["text"][0] = "crack crack"            # the train captions changed
    (tmp_path / "caps.json").write_text(json.dumps(captions))
    with pytest.raises(KeyError, match="vid02"):
        pretokenization.pretokenize(str(tmp_path / "caps.json"), tokenizer_dir, str(shard_dir), prefix="p.")
    assert _snapshot(shard_dir) == before
    with pytest.raises(FileNotFoundError, match=r"^--tokenizer: .*nowhere/bert does not exist"):
        pretokenization.pretokenize(str(tmp_path / "caps.json"), str(tmp_path / "nowhere" / "bert"), str(shard_dir),
                                    prefix="p.", splits=("train",))
    assert _snapshot(shard_dir) == before
