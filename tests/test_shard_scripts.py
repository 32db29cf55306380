"""tempclr_cli/shard_feature.py and tempclr_cli/pretokenization.py (scripts/ wraps them) on small hand-made inputs."""
import json
import os
import pickle
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
