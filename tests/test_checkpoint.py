"""Full-size VideoCLIP state-dict layout and strict checkpoint loading."""
import argparse
import json
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torch import nn  # noqa: E402
from transformers import BertConfig  # noqa: E402

from tempclr.models import MMFusionSeparate  # noqa: E402
from tempclr.utils.checkpoint import (CheckpointError, check_resume_checkpoint, checkpoint_problem,  # noqa: E402
                                      load_checkpoint_state, load_model_weights)

# the 310-key layout of a released VideoCLIP checkpoint (its key names and shapes, in tests/data)
LAYOUT_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "videoclip_state_dict.json")
H, FF = 768, 3072


def bert_layout(prefix: str, layers: int) -> dict:
    """Key -> shape of a transformers-3.x BertModel (with its persistent position_ids)."""
    layout = {f"{prefix}embeddings.word_embeddings.weight": [30522, H],
              f"{prefix}embeddings.position_embeddings.weight": [512, H],
              f"{prefix}embeddings.token_type_embeddings.weight": [2, H],
              f"{prefix}embeddings.LayerNorm.weight": [H], f"{prefix}embeddings.LayerNorm.bias": [H],
              f"{prefix}embeddings.position_ids": [1, 512],
              f"{prefix}pooler.dense.weight": [H, H], f"{prefix}pooler.dense.bias": [H]}
    per_layer = {"attention.self.query": [H, H], "attention.self.key": [H, H], "attention.self.value": [H, H],
                 "attention.output.dense": [H, H], "attention.output.LayerNorm": None,
                 "intermediate.dense": [FF, H], "output.dense": [H, FF], "output.LayerNorm": None}
    for i in range(layers):
        for name, weight in per_layer.items():
            key = f"{prefix}encoder.layer.{i}.{name}"
            layout[key + ".weight"] = weight or [H]
            layout[key + ".bias"] = [weight[0]] if weight else [H]
    return layout


def expected_layout() -> dict:
    layout = {"video_encoder.videomlp.linear1.weight": [H, 512], "video_encoder.videomlp.linear1.bias": [H],
              "video_encoder.videomlp.LayerNorm.weight": [H], "video_encoder.videomlp.LayerNorm.bias": [H],
              "video_encoder.videomlp.linear2.weight": [H, H], "video_encoder.videomlp.linear2.bias": [H]}
    layout.update(bert_layout("video_encoder.bert.", 6))
    layout.update(bert_layout("text_encoder.", 12))
    return {"mmmodel." + k: v for k, v in layout.items()}


def bert_base_config() -> BertConfig:
    return BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      intermediate_size=3072, max_position_embeddings=512)


def tiny_config() -> BertConfig:
    return BertConfig(vocab_size=24, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=80)


def run_config(video_layers: int):
    return OmegaConf.create({"dataset": {"bert_name": "bert-base-uncased", "max_video_len": 32},
                             "model": {"model_cls": "MMFusionSeparate", "num_hidden_video_layers": video_layers}})


@pytest.fixture(scope="module")
def full_model() -> MMFusionSeparate:
    """VideoCLIP at bert-base size (6 video layers), random init, no download; ~0.7 GB."""
    torch.manual_seed(0)
    return MMFusionSeparate(run_config(6), bert_config=bert_base_config()).eval()


@pytest.fixture(scope="module")
def meta_full_model() -> MMFusionSeparate:
    """The same model on the ``meta`` device: every tensor's shape and dtype, no memory, built in a moment."""
    with torch.device("meta"):
        return MMFusionSeparate(run_config(6), bert_config=bert_base_config()).eval()


def fp16_fairseq_state(model: nn.Module) -> dict:
    """The model's tensors in the released layout: ``mmmodel.`` prefix, fp16, persistent position_ids, and values
    different from the model's own (so a load that did nothing would be caught)."""
    state = {"mmmodel." + k: (v * 0.5 + 0.25).half() for k, v in model.state_dict().items()}
    for name, buffer in model.named_buffers():
        if name.endswith("embeddings.position_ids"):
            state["mmmodel." + name] = buffer.clone()
    return state


@pytest.fixture(scope="module")
def fp16_checkpoint(full_model, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("ckpt") / "checkpoint_best.pt")
    torch.save({"model": fp16_fairseq_state(full_model), "args": argparse.Namespace(arch="mmarch"),
                "optimizer_history": [], "extra_state": {"epoch": 3}}, path)
    return path


@pytest.fixture(scope="module")
def loaded_state(fp16_checkpoint) -> dict:
    return load_checkpoint_state(fp16_checkpoint)


def test_spec_layout_json_agrees_with_reference_tables():
    if not os.path.isfile(LAYOUT_JSON):
        raise FileNotFoundError(f"layout json missing: {LAYOUT_JSON}")
    with open(LAYOUT_JSON) as f:
        reference = json.load(f)
    assert len(reference) == 310
    assert {"mmmodel." + k: v for k, v in reference.items()} == expected_layout()


def test_full_model_matches_released_layout(meta_full_model):
    full_model = meta_full_model
    reference = expected_layout()
    layout = {k: list(v.shape) for k, v in full_model.state_dict().items()}
    layout.update({k: list(v.shape) for k, v in full_model.named_buffers() if k.endswith("embeddings.position_ids")})
    layout = {"mmmodel." + k: v for k, v in layout.items()}
    assert len(layout) == len(reference) == 310
    assert set(layout) == set(reference), sorted(set(layout) ^ set(reference))
    wrong = {k: (layout[k], reference[k]) for k in reference if layout[k] != reference[k]}
    assert not wrong, wrong
    assert len(full_model.state_dict()) == 308  # the 2 position_ids buffers are rebuilt, not stored
    params = dict(full_model.named_parameters())
    assert sum(p.numel() for p in params.values()) == 177_423_360
    assert sum(p.numel() for k, p in params.items() if k.startswith("text_encoder.")) == 109_482_240
    assert sum(p.numel() for k, p in params.items() if k.startswith("video_encoder.")) == 67_941_120
    layernorms = [k for k in params if "LayerNorm" in k]
    assert len(layernorms) == 78 and sum(params[k].numel() for k in layernorms) == 59_904
    assert full_model.video_encoder.videomlp.LayerNorm.eps == 1e-5
    assert full_model.video_encoder.bert.embeddings.LayerNorm.eps == 1e-12


@pytest.mark.slow  # builds the 177M-parameter model once per module (a few seconds, ~2 GB)
def test_full_model_forward_shapes(full_model):
    caps = torch.zeros(2, 64, dtype=torch.long)
    caps[:, :5] = torch.tensor([101, 102, 2000, 2001, 102])
    cmasks = caps != 0
    vmasks = torch.zeros(2, 32, dtype=torch.bool)
    vmasks[0, :32], vmasks[1, :10] = True, True
    with torch.no_grad():
        out = full_model(caps, cmasks, torch.randn(2, 32, 512), vmasks)
    assert out["pooled_video"].shape == (2, 768) and out["pooled_text"].shape == (2, 768)


@pytest.mark.slow  # builds the 177M-parameter model once per module (a few seconds, ~2 GB)
def test_fp16_fairseq_checkpoint_loads_strictly(full_model, loaded_state):
    assert all(k.startswith("mmmodel.") for k in loaded_state) and len(loaded_state) == 310
    report = load_model_weights(full_model, loaded_state, strict=True)
    assert report.missing == [] and report.unexpected == []
    assert report.dropped_position_ids == ["text_encoder.embeddings.position_ids",
                                           "video_encoder.bert.embeddings.position_ids"]
    assert len(report.loaded) == 308 and len(report.cast) == 308
    for key, value in full_model.state_dict().items():
        assert value.dtype == torch.float32, key
        assert torch.equal(value, loaded_state["mmmodel." + key].float()), key


@pytest.mark.slow  # builds the 177M-parameter model once per module (a few seconds, ~2 GB)
def test_extra_key_fails_naming_it(full_model, loaded_state):
    state = dict(loaded_state)
    state["mmmodel.video_encoder.bert.cls.predictions.bias"] = torch.zeros(30522, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"1 unexpected keys \[video_encoder\.bert\.cls\.predictions\.bias\]"):
        load_model_weights(full_model, state, source="ckpt.pt")


@pytest.mark.slow  # builds the 177M-parameter model once per module (a few seconds, ~2 GB)
def test_missing_key_fails_naming_it(full_model, loaded_state):
    state = dict(loaded_state)
    del state["mmmodel.text_encoder.pooler.dense.bias"]
    with pytest.raises(ValueError, match=r"ckpt\.pt .*1 missing keys \[text_encoder\.pooler\.dense\.bias\]"):
        load_model_weights(full_model, state, source="ckpt.pt")


# ---------------------------------------------------------------- loader details on a tiny model


@pytest.fixture()
def tiny_model() -> MMFusionSeparate:
    torch.manual_seed(1)
    return MMFusionSeparate(run_config(1), bert_config=tiny_config())


def test_position_ids_absent_is_fine_and_bad_position_ids_fail(tiny_model):
    state = {k: v for k, v in fp16_fairseq_state(tiny_model).items() if not k.endswith("position_ids")}
    report = load_model_weights(tiny_model, state)
    assert report.dropped_position_ids == [] and report.missing == []
    state["mmmodel.text_encoder.embeddings.position_ids"] = torch.arange(80).flip(0)[None]
    with pytest.raises(ValueError, match="text_encoder.embeddings.position_ids"):
        load_model_weights(tiny_model, state)


def test_wrong_shape_fails_naming_key(tiny_model):
    state = fp16_fairseq_state(tiny_model)
    state["mmmodel.video_encoder.videomlp.linear1.weight"] = torch.zeros(16, 1024)
    with pytest.raises(ValueError, match=r"videomlp\.linear1\.weight \(16, 1024\) vs model \(16, 512\)"):
        load_model_weights(tiny_model, state, strict=False)


def test_non_strict_reports_and_loads_the_rest(tiny_model):
    state = fp16_fairseq_state(tiny_model)
    del state["mmmodel.video_encoder.videomlp.linear2.bias"]
    state["mmmodel.seg_embeddings.weight"] = torch.zeros(256, 16)
    before = tiny_model.video_encoder.videomlp.linear2.bias.clone()
    report = load_model_weights(tiny_model, state, strict=False)
    assert report.missing == ["video_encoder.videomlp.linear2.bias"]
    assert report.unexpected == ["seg_embeddings.weight"]
    assert torch.equal(tiny_model.video_encoder.videomlp.linear2.bias, before)
    assert torch.equal(tiny_model.text_encoder.pooler.dense.bias,
                       state["mmmodel.text_encoder.pooler.dense.bias"].float())


def test_bf16_cast_and_model_without_prefix_in_keys(tiny_model):
    state = {k.replace("mmmodel.", ""): v.to(torch.bfloat16) if v.is_floating_point() else v
             for k, v in fp16_fairseq_state(tiny_model).items()}
    report = load_model_weights(tiny_model, state)
    assert len(report.cast) == len(report.loaded)
    assert tiny_model.text_encoder.pooler.dense.weight.dtype == torch.float32


def test_fairseq_wrapper_keeps_prefix(tiny_model):
    wrapper = nn.Module()
    wrapper.mmmodel = tiny_model
    state = {k.replace("mmmodel.", ""): v for k, v in fp16_fairseq_state(tiny_model).items()}
    report = load_model_weights(wrapper, state)
    assert report.missing == [] and all(k.startswith("mmmodel.") for k in report.loaded)


def test_checkpoint_file_entries(tmp_path):
    weights = {"w": torch.ones(2)}
    torch.save({"state_dict": weights, "model": {"w": torch.zeros(2)}}, tmp_path / "both.pt")
    assert torch.equal(load_checkpoint_state(str(tmp_path / "both.pt"))["w"], torch.ones(2))
    torch.save({"model": weights, "args": argparse.Namespace(lr=0.1)}, tmp_path / "fairseq.pt")
    assert list(load_checkpoint_state(str(tmp_path / "fairseq.pt"))) == ["w"]
    torch.save(weights, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match=r"bare\.pt: no 'state_dict' or 'model' entry"):
        load_checkpoint_state(str(tmp_path / "bare.pt"))
    torch.save({"model": [torch.ones(1)]}, tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list\.pt: checkpoint\['model'\] is a list"):
        load_checkpoint_state(str(tmp_path / "list.pt"))
    torch.save([1, 2], tmp_path / "notdict.pt")
    with pytest.raises(ValueError, match=r"notdict\.pt: expected a dict"):
        load_checkpoint_state(str(tmp_path / "notdict.pt"))
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_checkpoint_state(str(tmp_path / "nothere.pt"))


def test_weights_only_loading_keeps_namespace_allowed(tmp_path):
    """Loading through tempclr must not un-register argparse.Namespace (fairseq's resume needs it later)."""
    import argparse

    path = tmp_path / "ns.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "args": argparse.Namespace(a=1)}, path)
    load_checkpoint_state(str(path))
    assert argparse.Namespace in torch.serialization.get_safe_globals()
    torch.load(path, map_location="cpu", weights_only=True)


def _broken_checkpoints(folder):
    """A good checkpoint and the four broken kinds, in ``folder``; returns {name: path}."""
    good = folder / "checkpoint1.pt"
    torch.save({"model": {"w": torch.ones(3)}}, good)
    data = good.read_bytes()
    paths = {"good": good, "truncated": folder / "checkpoint_last.pt", "empty": folder / "empty.pt",
             "random": folder / "random.pt", "npy": folder / "features.npy"}
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["empty"].write_bytes(b"")
    paths["random"].write_bytes(bytes(range(7, 107)))
    np.save(paths["npy"], np.zeros(3, np.float32))
    return {k: str(v) for k, v in paths.items()}


def test_unreadable_checkpoints_are_named_and_described(tmp_path):
    paths = _broken_checkpoints(tmp_path)
    assert checkpoint_problem(paths["good"]) is None
    expected = {"truncated": r"truncated or damaged \(\d+ bytes; its zip directory is unreadable\)",
                "empty": r"empty \(0 bytes\)", "random": r"not a torch checkpoint \(starts with bytes b'\\x07\\x08",
                "npy": r"a numpy \.npy array, not a checkpoint"}
    for kind, what in expected.items():
        with pytest.raises(CheckpointError, match=rf"^checkpoint {re.escape(paths[kind])} is {what}"):
            load_checkpoint_state(paths[kind])
    assert load_checkpoint_state(paths["good"])["w"].tolist() == [1.0, 1.0, 1.0]


def test_resume_from_a_corrupt_last_checkpoint_names_the_newest_readable_one(tmp_path):
    paths = _broken_checkpoints(tmp_path)
    newer = tmp_path / "checkpoint2.pt"
    torch.save({"model": {}}, newer)
    os.utime(paths["good"], (1_000_000, 1_000_000))  # checkpoint2.pt is the newest readable one
    with pytest.raises(CheckpointError, match=rf"^cannot resume: {re.escape(paths['truncated'])} is truncated or "
                                              rf"damaged .*; resume from the newest readable one, "
                                              rf"{re.escape(str(newer))}: set fairseq.checkpoint.restore_file"):
        check_resume_checkpoint(str(tmp_path))
    check_resume_checkpoint(str(tmp_path), "checkpoint2.pt")       # a readable restore file: nothing to say
    check_resume_checkpoint(str(tmp_path / "fresh"))               # nothing to resume from: nothing to say
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "checkpoint_last.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is empty \(0 bytes\); no other readable checkpoint\*\.pt"):
        check_resume_checkpoint(str(lone))
    # the fairseq task checks before fairseq itself touches the file (after validating the config, before any
    # config is written or anything built)
    import tempclr
    tempclr.register_fairseq()
    from tempclr.tasks.fairseqmmtask import FairseqMMTask

    config = tmp_path / "never_built.yaml"
    config.write_text(f"fairseq:\n  checkpoint:\n    save_dir: {lone}\n")
    with pytest.raises(CheckpointError, match="^cannot resume: "):
        FairseqMMTask.setup_task(argparse.Namespace(save_dir=str(lone), restore_file="checkpoint_last.pt",
                                                    taskconfig=str(config)))
    assert not (lone / "config.yaml").exists()


def test_fairseq_loads_follow_the_same_position_ids_rule(tiny_model):
    """fairseq's own loads (resume, --finetune-from-model) go through FairseqMMModel.upgrade_state_dict_named:
    stored arange position ids are dropped, any other value is refused, as in load_model_weights."""
    from tempclr.models.fairseqmmmodel import FairseqMMModel

    wrapped = FairseqMMModel(tiny_model)
    state = fp16_fairseq_state(tiny_model)
    assert any(k.endswith("position_ids") for k in state)
    upgraded = wrapped.upgrade_state_dict_named(dict(state), "")
    assert not any(k.endswith("position_ids") for k in upgraded)
    wrapped.load_state_dict(upgraded, strict=True)
    state["mmmodel.text_encoder.embeddings.position_ids"] = torch.arange(80).flip(0)[None]
    with pytest.raises(ValueError, match="text_encoder.embeddings.position_ids"):
        wrapped.upgrade_state_dict_named(state, "")
