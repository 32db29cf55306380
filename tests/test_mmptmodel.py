"""MMPTModel (raw frames + captions -> embeddings) and building models from the BERT config alone when a full
checkpoint follows."""
import json
import os

import numpy as np
import pytest
import torch
from transformers import BertConfig

from synthetic_video import write_video
from tiny_world import VOCAB, config_only_bert, make_world, run_config
from tempclr.models import MMPTModel
from tempclr.processors.videoreader import read_clips
from tempclr.tasks.task import Task
from tempclr_cli.extract import extract_features, plan_videos

LAYOUT_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "videoclip_state_dict.json")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A config whose BERT folder has no weights, a fairseq-style checkpoint_best.pt and a random S3D."""
    return make_world(tmp_path_factory.mktemp("mmpt"))


@pytest.fixture(scope="module")
def loaded(world):
    return MMPTModel.from_pretrained(world["config"], s3d_checkpoint=world["s3d"])


def text_batch(tokenizer, aligner, texts):
    pairs = [aligner._build_text_seq(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    return (torch.as_tensor(np.stack([p[0] for p in pairs])), torch.as_tensor(np.stack([p[1] for p in pairs])))


def test_from_pretrained_needs_only_the_bert_config_and_vocabulary(world, loaded):
    model, tokenizer, aligner = loaded
    assert sorted(os.listdir(world["root"] / "bert")) == ["config.json", "vocab.txt"]
    assert isinstance(model, MMPTModel) and not model.training and not model.video_encoder.training
    for key, value in model.model.state_dict().items():
        assert torch.equal(value, world["state"]["mmmodel." + key].float()), key
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id) == (3, 1, 2)
    caps, cmasks = aligner._build_text_seq(tokenizer("crack the eggs", add_special_tokens=False)["input_ids"])
    assert caps[:6].tolist() == [3, 1, 5, 6, 7, 1] and cmasks.sum() == 6 and len(caps) == 64
    model.train()
    assert model.model.training and not model.video_encoder.training   # S3D's BatchNorm stays fixed
    model.eval()


def test_training_from_scratch_still_reads_the_bert_weights(world):
    task = Task(run_config(str(world["root"] / "bert"), str(world["root"] / "ckpt")))
    with pytest.raises(OSError, match=r"model\.safetensors"):
        task.build_model()


def test_a_folder_without_config_json_is_named(world, tmp_path):
    (tmp_path / "vocab_only").mkdir()
    (tmp_path / "vocab_only" / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    task = Task(run_config(str(tmp_path / "vocab_only"), str(world["root"] / "ckpt")))
    with pytest.raises(FileNotFoundError, match=r"dataset\.bert_name: .*vocab_only gives no BERT config\.json"):
        task.build_model(checkpoint=str(world["root"] / "ckpt" / "checkpoint_best.pt"))


@pytest.mark.slow
def test_frames_give_what_the_extractor_features_give(world, loaded, tmp_path):
    """Two 1-second videos at 224: MMPTModel on their frames equals the model on the extractor's .npy files."""
    model, tokenizer, aligner = loaded
    vdir, fdir = tmp_path / "videos", tmp_path / "feats"
    vdir.mkdir()
    write_video(str(vdir / "a.mp4"), 25, 64, 48, 25)
    write_video(str(vdir / "b.mp4"), 30, 40, 60, 30, frame=lambda i, h, w: np.random.default_rng(i).integers(
        0, 256, (h, w, 3), dtype=np.uint8))
    extract_features(plan_videos(str(vdir), str(fdir)), model.video_encoder, batch_size=2, progress=False)
    frames = torch.from_numpy(np.stack([read_clips(str(vdir / f"{n}.mp4")) for n in "ab"])).float() / 255
    assert frames.shape == (2, 1, 30, 224, 224, 3)
    caps, cmasks = text_batch(tokenizer, aligner, ["crack the eggs", "whisk flour and milk"])
    with torch.no_grad():
        got = model(frames, caps, cmasks)
        vfeats = torch.zeros(2, 32, 512)
        vfeats[:, :1] = torch.from_numpy(np.stack([np.load(fdir / f"{n}.npy") for n in "ab"])).float()
        vmasks = torch.zeros(2, 32, dtype=torch.bool)
        vmasks[:, :1] = True
        expected = model.model(caps, cmasks, vfeats, vmasks)
    # the .npy files are float16: agreement to its rounding
    torch.testing.assert_close(got["pooled_video"], expected["pooled_video"], atol=5e-3, rtol=5e-3)
    torch.testing.assert_close(got["pooled_text"], expected["pooled_text"], atol=0, rtol=0)
    with torch.no_grad():
        unnormalised = model.video_encoder(frames[:, 0].permute(0, 4, 1, 2, 3))["video_embedding"]
    assert not torch.allclose(unnormalised.norm(dim=1), torch.ones(2), atol=0.05)  # so the L2 step matters


@pytest.mark.slow
def test_batches_scores_and_single_sides(loaded):
    model, tokenizer, aligner = loaded
    gen = torch.Generator().manual_seed(0)
    frames = torch.rand(3, 2, 30, 32, 32, 3, generator=gen)
    caps, cmasks = text_batch(tokenizer, aligner, ["crack the eggs", "pour batter", "flip a pan and add milk"])
    with torch.no_grad():
        both = model(frames, caps, cmasks)
        score = model(frames, caps, cmasks, return_score=True)["score"]
        video = model.forward_video(frames)
        text = model.forward_text(caps, cmasks)
        singles = [model(frames[i:i + 1], caps[i:i + 1], cmasks[i:i + 1]) for i in range(3)]
        first_second = model.forward_video(frames[:, :1])
        masked = model.forward_video(frames, vmasks=torch.tensor([[True, False]] * 3))
    assert score.shape == (3,)
    torch.testing.assert_close(score, (both["pooled_video"] * both["pooled_text"]).sum(-1))
    torch.testing.assert_close(video, both["pooled_video"])
    torch.testing.assert_close(text, both["pooled_text"])
    for i, single in enumerate(singles):
        torch.testing.assert_close(single["pooled_video"][0], both["pooled_video"][i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(single["pooled_text"][0], both["pooled_text"][i], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked, first_second, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(video, first_second, atol=1e-3)


def test_bad_inputs_are_named(loaded):
    model, tokenizer, aligner = loaded
    caps, cmasks = text_batch(tokenizer, aligner, ["eggs"])
    with pytest.raises(ValueError, match=r"33 seconds of video, the model takes at most dataset\.max_video_len = 32"):
        model._padded(torch.zeros(1, 33, 512), None)
    with pytest.raises(ValueError, match=r"video_frames must be \[B, T, 30, H, W, 3\].*got shape \(1, 30, 32, 32, 3\)"):
        model.forward_video(torch.zeros(1, 30, 32, 32, 3))
    with pytest.raises(ValueError, match=r"2 videos but 1 captions"):
        model(torch.zeros(2, 1, 30, 32, 32, 3), caps, cmasks)


def test_missing_checkpoint_is_named(world):
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*ckpt/nope\.pt"):
        MMPTModel.from_pretrained(world["config"], checkpoint="nope.pt", s3d_checkpoint=world["s3d"])


@pytest.mark.slow  # a 177M-parameter model and its 355 MB fp16 checkpoint
def test_released_layout_checkpoint_loads_with_only_config_and_vocab(tmp_path):
    with open(LAYOUT_JSON) as f:
        layout = json.load(f)
    assert len(layout) == 310
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in layout.items():
        if key.endswith("position_ids"):
            state["mmmodel." + key] = torch.arange(shape[-1])[None]
        else:
            state["mmmodel." + key] = torch.randn(shape, generator=gen).half()
    torch.save({"model": state}, tmp_path / "checkpoint_best.pt")
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [f"w{i}" for i in range(30522 - len(vocab))]
    bert = config_only_bert(tmp_path / "bert-base-uncased", BertConfig(), vocab)
    task = Task(run_config(bert, str(tmp_path), video_layers=6))
    model = task.build_model(checkpoint=str(tmp_path / "checkpoint_best.pt"))
    assert sorted(os.listdir(bert)) == ["config.json", "vocab.txt"]
    own = model.state_dict()
    assert len(own) == 308
    for key, value in own.items():
        assert torch.equal(value, state["mmmodel." + key].float()), key
