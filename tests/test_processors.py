"""Sequence builders and the HowTo100M clip samplers."""
import random

import numpy as np
import pytest
from omegaconf import OmegaConf

from tempclr.processors.how2processor import OverlappedAligner, VariedLenAligner
from tempclr.processors.processor import Aligner
from tempclr.utils.collate import collate_dicts


def config(vocab_dir, **extra):
    base = {"bert_name": vocab_dir, "max_video_len": 32, "max_len": 96, "sampled_min_len": 8,
            "sampled_max_len": 64, "sampled_video_min_len": 3, "sampled_video_max_len": 32, "clip_per_video": 16}
    base.update(extra)
    return OmegaConf.create(base)


def video(num_seconds, dim=8, seed=0):
    return np.random.default_rng(seed).standard_normal((num_seconds, dim)).astype(np.float16)


def captions(num, seconds_each=4.0, tokens_each=3):
    rng = np.random.default_rng(1)
    starts = [i * seconds_each for i in range(num)]
    return {"start": starts, "end": [s + seconds_each + 1.0 for s in starts],
            "cap": [list(rng.integers(5, 20, size=tokens_each)) for _ in range(num)]}


def test_build_video_seq_copies_clips_consecutively(vocab_dir):
    aligner = Aligner(config(vocab_dir))
    feat = video(50)
    vfeats, vmasks = aligner._build_video_seq(feat, {"start": [2, 40], "end": [12, 45]})
    assert vfeats.shape == (32, 8) and vfeats.dtype == np.float32 and vmasks.dtype == bool
    np.testing.assert_array_equal(vfeats[:10], feat[2:12].astype(np.float32))
    np.testing.assert_array_equal(vfeats[10:15], feat[40:45].astype(np.float32))
    assert vmasks.sum() == 15 and not vfeats[15:].any()
    vfeats, vmasks = aligner._build_video_seq(feat)  # None: first min(T, 32) seconds
    assert vmasks.all()
    np.testing.assert_array_equal(vfeats, feat[:32].astype(np.float32))
    vfeats, vmasks = aligner._build_video_seq(feat, {"start": [0, 20], "end": [20, 50]})  # truncated at 32
    assert vmasks.all()
    np.testing.assert_array_equal(vfeats[20:], feat[20:32].astype(np.float32))


def test_build_text_seq_layout_and_truncation(vocab_dir):
    aligner = Aligner(config(vocab_dir))
    cls_id, sep_id, pad_id = aligner.cls_token_id, aligner.sep_token_id, aligner.pad_token_id
    assert (cls_id, sep_id, pad_id) == (2, 3, 0)
    caps, cmasks = aligner._build_text_seq({"cap": [[5, 6], [7], [8, 9]]}, [0, 2])
    assert caps.shape == (64,) and caps.dtype == np.int64
    assert caps[:7].tolist() == [cls_id, sep_id, 5, 6, 8, 9, sep_id] and (caps[7:] == pad_id).all()
    assert cmasks[:7].all() and not cmasks[7:].any()
    caps, cmasks = aligner._build_text_seq(list(range(5, 200)))  # 61 tokens kept
    assert cmasks.all() and caps[2:63].tolist() == list(range(5, 66)) and caps[63] == sep_id


@pytest.mark.parametrize("aligner_cls", [OverlappedAligner, VariedLenAligner])
@pytest.mark.parametrize("num_seconds", [2, 40, 300])
def test_sampled_clips_shapes_bounds_and_order(vocab_dir, aligner_cls, num_seconds):
    random.seed(0)
    aligner = aligner_cls(config(vocab_dir))
    # captions every 4 s (every 1 s for the 2-s video: a caption may not start past the features + 1 s)
    feat, text = video(num_seconds), captions(num=max(2, num_seconds // 5), seconds_each=min(4.0, num_seconds / 2))
    for _ in range(20):
        out = aligner("vid", feat, text)
        assert out["caps"].shape == (16, 64) and out["vfeats"].shape == (16, 32, 8)
        assert out["vmasks"].shape == (16, 32) and out["cmasks"].shape == (16, 64)
        keys = list(zip(out["text_start"], out["video_start"], out["text_end"], out["video_end"]))
        assert keys == sorted(keys)
        for i in range(16):
            ts, te, vs, ve = out["text_start"][i], out["text_end"][i], out["video_start"][i], out["video_end"][i]
            assert 0 <= ts < te <= len(text["cap"])
            assert 0 <= vs <= ve <= num_seconds
            assert out["vmasks"][i].sum() == min(ve - vs, 32)
            np.testing.assert_array_equal(out["vfeats"][i][: ve - vs][:32], feat[vs:ve][:32].astype(np.float32))
            tokens = sum(len(text["cap"][j]) for j in range(ts, te))
            assert out["cmasks"][i].sum() == min(tokens, 61) + 3
            if aligner_cls is OverlappedAligner:
                # a window of U{3..32} seconds unless the whole video is shorter
                assert min(3, num_seconds) <= ve - vs <= 32
                # the span grows until the token budget (>= 8), all captions, or 256 s
                covers_all = ts == 0 and te == len(text["cap"])
                assert tokens >= 8 or covers_all or text["end"][te - 1] - text["start"][ts] >= 256
            else:
                assert vs == max(min(int(np.floor(text["start"][ts])), ve), 0)
                assert ve == min(int(np.ceil(text["end"][te - 1])), num_seconds)
    assert out["video_id"] == "vid"


def test_video_without_captions_is_a_clear_error(vocab_dir):
    aligner = OverlappedAligner(config(vocab_dir))
    with pytest.raises(ValueError, match="demo_1 has no captions"):
        aligner(("demo_1", -1, 0, 0), video(10), {"start": [], "end": [], "cap": []})


def test_collate_stacks_groups(vocab_dir):
    aligner = OverlappedAligner(config(vocab_dir, clip_per_video=4))
    items = [aligner(f"v{i}", video(30), captions(6)) for i in range(3)]
    batch = collate_dicts(items)
    assert tuple(batch["caps"].shape) == (3, 4, 64) and tuple(batch["video_start"].shape) == (3, 4)
    assert batch["video_id"] == ["v0", "v1", "v2"]
