"""The demo world and ``scripts/make_demo_data.py``: determinism, formats read back through ShardedTensor, the
tiny BERT folder, and that the features carry the step signal captions talk about."""
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from tempclr.demo.how2 import how2_video_id
from tempclr.demo.world import CHATTER, World
from tempclr.utils.shardedtensor import ShardedTensor
from conftest import load_script

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_VAL, SHARD_SIZE, SEED = 20, 6, 8, 3


make_demo = load_script("make_demo_data")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "data" / "demo"
    summary = make_demo.make_demo_data(str(out), seed=SEED, n_train=N_TRAIN, n_val=N_VAL, shard_size=SHARD_SIZE)
    assert summary["videos"] == {"train": N_TRAIN, "val": N_VAL}
    assert summary["shards"] == {"train": 3, "val": 1}
    return out


def _shard_dir(demo: Path) -> Path:
    return demo / "feat" / "feat_how2_s3d_shard"


def _ids(demo: Path, split: str) -> list:
    return (demo / "how2" / f"how2_s3d_{split}.lst").read_text().split()


def _captions(demo: Path) -> dict:
    return json.loads((demo / "how2" / "raw_caption.json").read_text())


def test_generation_is_deterministic(demo, tmp_path):
    again = tmp_path / "again"
    make_demo.make_demo_data(str(again), seed=SEED, n_train=N_TRAIN, n_val=N_VAL, shard_size=SHARD_SIZE)
    files = sorted(p.relative_to(demo) for p in demo.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    how2_npy = [f for f in files if str(f).startswith("feat") and str(f).endswith(".npy")]
    assert len(how2_npy) == N_TRAIN + N_VAL + 4 * 2 + 4 * 4
    assert any(str(f).startswith("crosstask/features/") for f in files)  # the CrossTask release is drawn too
    different = [str(f) for f in files if (demo / f).read_bytes() != (again / f).read_bytes()]
    assert different == [], f"files differ between two runs: {different}"


def test_other_seed_gives_other_features(demo, tmp_path):
    other = tmp_path / "other"
    make_demo.make_demo_data(str(other), seed=SEED + 1, n_train=2, n_val=1, shard_size=SHARD_SIZE)
    name = f"feat/feat_how2_s3d/{how2_video_id(0)}.npy"
    assert (other / name).read_bytes() != (demo / name).read_bytes()


def test_layout_and_ids(demo):
    for path in ["bert/vocab.txt", "bert/config.json", "bert/model.safetensors", "bert/tokenizer_config.json",
                 "how2/raw_caption.json", "world.json", "feat/feat_how2_s3d_shard/train_meta.pkl",
                 "feat/feat_how2_s3d_shard/raw_caption_dedup.demo.val_0.caps_ids_data.npy"]:
        assert (demo / path).is_file(), f"missing {path}"
    ids = _ids(demo, "train") + _ids(demo, "val")
    assert len(ids) == N_TRAIN + N_VAL == len(set(ids))
    assert not [(a, b) for a in ids for b in ids if a != b and a in b], "a video id is a substring of another"
    assert [p for p in demo.parent.iterdir() if p.name != "demo"] == [], "temp folders left next to --out"
    world = json.loads((demo / "world.json").read_text())
    assert world["seed"] == SEED and len(world["tasks"]) == 8
    assert world["how2"]["text_prefix"] == "raw_caption_dedup.demo."


def test_video_shards_match_feature_files(demo):
    for split in ("train", "val"):
        ids = _ids(demo, split)
        with open(_shard_dir(demo) / f"{split}_meta.pkl", "rb") as f:
            meta = pickle.load(f)
        assert [v for k in sorted(meta) for v in meta[k]] == ids, "shards do not follow list order"
        assert all(len(meta[k]) == SHARD_SIZE for k in sorted(meta)[:-1])
        for k, shard_ids in meta.items():
            shard = ShardedTensor.load(str(_shard_dir(demo) / f"{split}_{k}"))
            assert len(shard) == len(shard_ids)
            for i, video_id in enumerate(shard_ids):
                feats = np.load(demo / "feat" / "feat_how2_s3d" / f"{video_id}.npy")
                assert feats.dtype == np.float16 and feats.ndim == 2 and feats.shape[1] == 512
                assert 60 <= len(feats) <= 180
                np.testing.assert_array_equal(shard[i], feats)
                norms = np.linalg.norm(feats.astype(np.float32), axis=1)
                assert np.abs(norms - 1).max() < 2e-3, f"{video_id}: rows not L2-normalised ({norms.min()})"


def test_text_shards_follow_captions(demo):
    captions = _captions(demo)
    shard_dir = _shard_dir(demo)
    with open(shard_dir / "train_meta.pkl", "rb") as f:
        meta = pickle.load(f)
    for k, shard_ids in meta.items():
        prefix = str(shard_dir / f"raw_caption_dedup.demo.train_{k}")
        startends = ShardedTensor.load(prefix + ".startends")
        caps = ShardedTensor.load(prefix + ".caps_ids")
        assert startends.data.dtype == np.float32 and startends.data.shape[1:] == (2,)
        assert caps.data.dtype == np.int32 and caps.data.shape[1:] == (32,)
        np.testing.assert_array_equal(startends.lengths(), caps.lengths())
        for i, video_id in enumerate(shard_ids):
            entry = captions[video_id]
            np.testing.assert_allclose(startends[i], np.array([entry["start"], entry["end"]], np.float32).T)
            ids = np.asarray(caps[i])
            is_pad = ids == -1
            assert not np.any(is_pad[:, :-1] & ~is_pad[:, 1:]), "a token id follows -1 padding"
            assert np.all(ids[~is_pad] >= 0) and np.all((~is_pad).sum(1) > 0)


def test_captions_sorted_and_inside_video(demo):
    for video_id, entry in _captions(demo).items():
        duration = len(np.load(demo / "feat" / "feat_how2_s3d" / f"{video_id}.npy", mmap_mode="r"))
        starts, ends = np.array(entry["start"]), np.array(entry["end"])
        assert len(starts) == len(ends) == len(entry["text"]) > 0
        assert np.all(np.diff(starts) >= 0), f"{video_id}: captions not sorted by start"
        assert np.all(starts >= 0) and np.all(ends <= duration) and np.all(ends > starts), video_id


def test_tokenizer_and_model_load_offline(demo):
    from transformers import AutoTokenizer, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(demo / "bert"))
    assert type(tokenizer).__name__ in ("BertTokenizerFast", "BertTokenizer") and tokenizer.is_fast
    assert tokenizer.pad_token_id == 0
    assert tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", "[MASK]"]) == [2, 3, 4]
    vocab = (demo / "bert" / "vocab.txt").read_text().split("\n")[:-1]
    assert len(tokenizer) == len(vocab) and 800 <= len(vocab) <= 2000
    texts = [t for entry in _captions(demo).values() for t in entry["text"]]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert not any(tokenizer.unk_token_id in ids for ids in encoded), "a demo caption has [UNK]"
    for text, ids in zip(texts[:50], encoded):
        assert tokenizer.decode(ids).replace(" ", "") == text.replace(" ", "")
    model = BertModel.from_pretrained(str(demo / "bert"))
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.intermediate_size, config.vocab_size) == (2, 128, 2, 512, len(vocab))


def _step_cosines(demo: Path, world: World) -> tuple[np.ndarray, np.ndarray]:
    """Per step second: cosine to its own prototype, and mean cosine to the other step prototypes."""
    steps = json.loads((demo / "how2" / "demo_steps.json").read_text())
    own, other = [], []
    for video_id, truth in steps.items():
        feats = np.load(demo / "feat" / "feat_how2_s3d" / f"{video_id}.npy").astype(np.float32)
        task = world.task(truth["task"])
        sims = feats @ world.prototypes.T
        for step_index, start, end in truth["steps"]:
            proto = task.steps[step_index].proto
            own.append(sims[start:end, proto])
            other.append(np.delete(sims[start:end], proto, axis=1).mean(1))
    return np.concatenate(own), np.concatenate(other)


def test_features_carry_step_signal(demo):
    own, other = _step_cosines(demo, World(SEED))
    assert own.mean() > 0.4 and abs(other.mean()) < 0.05, (own.mean(), other.mean())
    assert np.mean(own > other) > 0.99


def test_step_captions_overlap_their_step(demo):
    world = World(SEED)
    steps = json.loads((demo / "how2" / "demo_steps.json").read_text())
    for video_id, entry in _captions(demo).items():
        task = world.task(steps[video_id]["task"])
        for start, end, text in zip(entry["start"], entry["end"], entry["text"]):
            if text in CHATTER:
                continue
            hits = [(s, e) for k, s, e in steps[video_id]["steps"] if task.steps[k].phrase in text]
            assert hits, f"{video_id}: caption {text!r} names no performed step"
            assert any(start < e and end > s for s, e in hits), f"{video_id}: {text!r} is far from its step"


def test_world_structure():
    world = World(0)
    assert len(world.tasks) == 8 and len({t.id for t in world.tasks}) == 8
    for task in world.tasks:
        assert 4 <= len(task.steps) <= 7 and task.url.startswith("https://")
        assert all("," not in step.name and step.phrase for step in task.steps)
    np.testing.assert_allclose(np.linalg.norm(world.prototypes, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(World(0).prototypes, world.prototypes)
    assert not np.array_equal(World(1).prototypes, world.prototypes)
    with pytest.raises(KeyError, match="90001"):
        world.task("nope")


def test_sampled_video_layout():
    world = World(0)
    rng = np.random.default_rng(5)
    for task in world.tasks:
        video = world.sample_video(rng, task)
        assert 60 <= video.duration <= 180
        indices = [k for k, _, _ in video.steps]
        assert indices == sorted(indices) and len(indices) >= 3, "steps out of script order"
        bounds = [b for _, s, e in video.steps for b in (s, e)]
        assert bounds == sorted(bounds) and bounds[0] > 0 and bounds[-1] < video.duration
        labels = video.step_labels()
        assert (labels == -1).any() and set(labels[labels >= 0]) == set(indices)


def test_refuses_to_replace_a_folder_that_is_not_demo_data(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="world.json"):
        make_demo.make_demo_data(str(tmp_path), n_train=1, n_val=1)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_replaces_an_earlier_demo_folder(tmp_path):
    out = tmp_path / "demo"
    make_demo.make_demo_data(str(out), seed=0, n_train=1, n_val=1)
    (out / "stale.txt").write_text("from an earlier run")
    summary = make_demo.make_demo_data(str(out), seed=0, n_train=2, n_val=1)
    assert summary["videos"] == {"train": 2, "val": 1}
    assert not (out / "stale.txt").exists() and len(_ids(out, "train")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"], "temp or old folders left behind"
