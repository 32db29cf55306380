"""VideoCLIP model on transformers 5.x with a tiny BERT: shapes, pooling, masks, loading."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from transformers import AutoTokenizer, BertConfig, BertModel  # noqa: E402

from tempclr.models import (MMBertForEncoder, MMFusionSeparate, MMFusionSeparateActionLocalization,  # noqa: E402
                            MMFusionSeparateFullVideoBGRetrieval)
from tempclr.modules.mm import MMBertEmbeddings, VideoTokenMLP  # noqa: E402
from tempclr.utils.registry import lookup  # noqa: E402

# special tokens away from bert-base ids 0/101/102, so hard-coded ids would fail
VOCAB = ["[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]", "crack", "the", "eggs", "into", "a", "bowl", "whisk",
         "add", "flour", "and", "milk", "pour", "batter", "pan", "flip"]
SEP, PAD, CLS = 1, 2, 3
MAX_VIDEO_LEN, CAPS_LEN, FEAT = 32, 64, 512


def tiny_bert_config(**overrides) -> BertConfig:
    values = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=128, pad_token_id=PAD,
                  hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    values.update(overrides)
    return BertConfig(**values)


def run_config(bert_name: str, video_layers: int = 2, model_cls: str = "MMFusionSeparate"):
    return OmegaConf.create({
        "dataset": {"bert_name": bert_name, "max_video_len": MAX_VIDEO_LEN, "train_path": None},
        "model": {"model_cls": model_cls, "mm_encoder_cls": None, "video_encoder_cls": "MMBertForEncoder",
                  "text_encoder_cls": "BertModel", "num_hidden_video_layers": video_layers},
    })


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> str:
    """A tiny BERT saved by BertModel.save_pretrained plus its vocab.txt and tokenizer config."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    BertModel(tiny_bert_config()).save_pretrained(str(folder))
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer", "do_lower_case": true}')
    return str(folder)


@pytest.fixture(scope="module")
def tokenizer(bert_dir):
    return AutoTokenizer.from_pretrained(bert_dir)


@pytest.fixture(scope="module")
def model(tokenizer) -> MMFusionSeparate:
    torch.manual_seed(1)
    built = MMFusionSeparate(run_config("unused"), bert_config=tiny_bert_config(), tokenizer=tokenizer)
    return built.eval()


def make_batch(batch: int = 4, seed: int = 0):
    """caps/cmasks as the aligner builds them ([CLS] [SEP] tokens [SEP] pad), random vfeats, varied vmasks."""
    gen = torch.Generator().manual_seed(seed)
    text_lens = [3, 10, 1, 25][:batch] + [5] * max(0, batch - 4)
    video_lens = [32, 7, 1, 19][:batch] + [4] * max(0, batch - 4)
    caps = torch.full((batch, CAPS_LEN), PAD, dtype=torch.long)
    cmasks = torch.zeros(batch, CAPS_LEN, dtype=torch.bool)
    vmasks = torch.zeros(batch, MAX_VIDEO_LEN, dtype=torch.bool)
    for b, (n_text, n_video) in enumerate(zip(text_lens, video_lens)):
        tokens = torch.randint(5, len(VOCAB), (n_text,), generator=gen)
        caps[b, :n_text + 3] = torch.cat([torch.tensor([CLS, SEP]), tokens, torch.tensor([SEP])])
        cmasks[b, :n_text + 3] = True
        vmasks[b, :n_video] = True
    vfeats = torch.randn(batch, MAX_VIDEO_LEN, FEAT, generator=gen) * vmasks[..., None]
    return caps, cmasks, vfeats, vmasks


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=atol, rtol=1e-5)


# ---------------------------------------------------------------- building blocks


def test_video_mlp_layout_and_layernorm_eps():
    mlp = VideoTokenMLP(tiny_bert_config())
    assert sorted(mlp.state_dict()) == ["LayerNorm.bias", "LayerNorm.weight", "linear1.bias", "linear1.weight",
                                        "linear2.bias", "linear2.weight"]
    assert mlp.LayerNorm.eps == 1e-5 and tuple(mlp.linear1.weight.shape) == (32, FEAT)
    x = torch.randn(2, 5, FEAT)
    h = torch.nn.functional.gelu(mlp.linear1(x))  # erf form
    expected = mlp.linear2(torch.nn.functional.layer_norm(h, (32,), mlp.LayerNorm.weight, mlp.LayerNorm.bias, 1e-5))
    assert close(mlp(x), expected)


def test_position_ids_with_and_without_video():
    config = tiny_bert_config()
    config.max_video_len = 8
    emb = MMBertEmbeddings(config)
    assert emb.LayerNorm.eps == config.layer_norm_eps == 1e-12
    assert emb.build_position_ids(2, 5).tolist() == [[0, 1, 2, 3, 4, 5, 9]]
    assert emb.build_position_ids(2, 8).tolist() == [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]
    assert emb.build_position_ids(4, None).tolist() == [[0, 10, 11, 12]]
    with pytest.raises(ValueError, match="max_video_len"):
        emb.build_position_ids(2, 9)


def test_embeddings_splice_video_after_cls():
    config = tiny_bert_config()
    config.max_video_len = 8
    emb = MMBertEmbeddings(config).eval()
    ids = torch.tensor([[CLS, SEP]])
    video = torch.randn(1, 3, 32)
    words = emb.word_embeddings(ids)
    raw = torch.cat([words[:, :1], video, words[:, 1:]], dim=1)
    raw = raw + emb.position_embeddings(torch.tensor([[0, 1, 2, 3, 9]])) + emb.token_type_embeddings.weight[0]
    assert close(emb(ids, video), emb.LayerNorm(raw))


# ---------------------------------------------------------------- MMFusionSeparate


def test_forward_shapes(model):
    caps, cmasks, vfeats, vmasks = make_batch()
    with torch.no_grad():
        out = model(caps, cmasks, vfeats, vmasks)
        hidden_video = model.forward_video(vfeats, vmasks, caps, cmasks, output_hidden_states=True)
        hidden_text = model.forward_text(caps, cmasks, output_hidden_states=True)
    assert set(out) == {"pooled_video", "pooled_text"}
    assert out["pooled_video"].shape == (4, 32) and out["pooled_text"].shape == (4, 32)
    assert hidden_video.shape == (4, MAX_VIDEO_LEN + 2, 32) and hidden_text.shape == (4, CAPS_LEN - 1, 32)
    assert torch.isfinite(out["pooled_video"]).all() and torch.isfinite(out["pooled_text"]).all()


def test_pooling_equals_per_example_mean(model):
    """Batched masked means equal a loop over single examples (non-prefix masks included)."""
    caps, cmasks, vfeats, vmasks = make_batch()
    vmasks[1, 20] = True  # a hole-y mask
    with torch.no_grad():
        out = model(caps, cmasks, vfeats, vmasks)
        for b in range(caps.size(0)):
            one = slice(b, b + 1)
            video_hidden = model.video_encoder(
                caps[one, :2], vfeats[one], torch.cat([cmasks[one, :1], vmasks[one], cmasks[one, 1:2]], 1))[0][0]
            rows = [1 + t for t in range(MAX_VIDEO_LEN) if vmasks[b, t]] + [MAX_VIDEO_LEN + 1]
            expected_video = video_hidden[rows].mean(0)
            text_ids = torch.cat([caps[one, :1], caps[one, 2:]], 1)
            text_mask = torch.cat([cmasks[one, :1], cmasks[one, 2:]], 1).long()
            text_hidden = model.text_encoder(input_ids=text_ids, attention_mask=text_mask).last_hidden_state[0]
            n_text = int(cmasks[b].sum()) - 2  # tokens + final [SEP]
            expected_text = text_hidden[1:1 + n_text].mean(0)
            assert close(out["pooled_video"][b], expected_video), (b, out["pooled_video"][b], expected_video)
            assert close(out["pooled_text"][b], expected_text), (b, out["pooled_text"][b], expected_text)


def test_video_padding_does_not_change_pooled_video(model):
    caps, cmasks, vfeats, vmasks = make_batch()
    noisy = vfeats + 5.0 * torch.randn(vfeats.shape) * (~vmasks)[..., None]
    assert not torch.equal(noisy, vfeats)
    with torch.no_grad():
        clean_out = model.forward_video(vfeats, vmasks, caps, cmasks)
        noisy_out = model.forward_video(noisy, vmasks, caps, cmasks)
        # dropping the padding entirely: example 1 has 7 valid frames as a prefix
        short = model.forward_video(vfeats[1:2, :7], vmasks[1:2, :7], caps[1:2], cmasks[1:2])
    assert close(clean_out, noisy_out), (clean_out - noisy_out).abs().max()
    assert close(clean_out[1:2], short), (clean_out[1:2] - short).abs().max()


def test_text_padding_does_not_change_pooled_text(model):
    caps, cmasks, vfeats, vmasks = make_batch()
    other = caps.clone()
    other[~cmasks] = torch.randint(5, len(VOCAB), (int((~cmasks).sum()),))
    with torch.no_grad():
        base = model.forward_text(caps, cmasks)
        changed = model.forward_text(other, cmasks)
        cut = model.forward_text(caps[:, :30], cmasks[:, :30])  # longest caption is 28 tokens
    assert close(base, changed), (base - changed).abs().max()
    assert close(base, cut), (base - cut).abs().max()


def test_eager_and_sdpa_agree(tokenizer):
    torch.manual_seed(2)
    sdpa = MMFusionSeparate(run_config("unused"), bert_config=tiny_bert_config(), tokenizer=tokenizer).eval()
    eager_config = tiny_bert_config()
    eager_config._attn_implementation = "eager"
    eager = MMFusionSeparate(run_config("unused"), bert_config=eager_config, tokenizer=tokenizer).eval()
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.video_encoder.config._attn_implementation == "sdpa"
    assert eager.video_encoder.config._attn_implementation == "eager"
    assert eager.text_encoder.config._attn_implementation == "eager"
    batch = make_batch()
    with torch.no_grad():
        a, b = sdpa(*batch), eager(*batch)
    for key in a:
        assert close(a[key], b[key], atol=1e-5), (key, (a[key] - b[key]).abs().max())


def test_training_mode_backward_reaches_both_encoders(tokenizer):
    model = MMFusionSeparate(run_config("unused"), bert_config=tiny_bert_config(), tokenizer=tokenizer).train()
    out = model(*make_batch())
    (out["pooled_video"] @ out["pooled_text"].T).trace().backward()
    assert model.video_encoder.videomlp.linear1.weight.grad.abs().sum() > 0
    assert model.text_encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- action localisation


def windowed_run(model_cls, tokenizer, n_captions):
    """A windowed model (dummy caps, [CLS] masked), ``n_captions`` captions and 3 windows of 32 + 7 + 1 valid
    seconds: ``(model, caps, cmasks, windows, window_masks, out, hidden, pooled_text)`` with the model's output,
    and by hand the per-window last hidden states and the pooled captions."""
    torch.manual_seed(3)
    model = model_cls(run_config("unused", model_cls=model_cls.__name__), bert_config=tiny_bert_config(),
                      tokenizer=tokenizer).eval()
    assert model.dummy_caps.tolist() == [[CLS, SEP, PAD, SEP]]
    caps, cmasks, _, _ = make_batch(n_captions, seed=5)
    _, _, windows, window_masks = make_batch(3, seed=6)
    with torch.no_grad():
        out = model(caps[None], cmasks[None], windows[None], window_masks[None])
        dummy_caps = torch.tensor([[CLS, SEP, PAD, SEP]] * 3)
        dummy_masks = torch.tensor([[False, True, False, True]] * 3)
        hidden = model.forward_video(windows, window_masks, dummy_caps, dummy_masks, output_hidden_states=True)
        pooled_text = model.forward_text(caps, cmasks)
    return model, caps, cmasks, windows, window_masks, out, hidden, pooled_text


def test_action_localization_outputs(tokenizer):
    model, caps, cmasks, windows, window_masks, out, hidden, pooled_text = windowed_run(
        MMFusionSeparateActionLocalization, tokenizer, 4)  # 4 steps
    total = int(window_masks.sum())
    assert total == 40
    assert out["video_seq"].shape == (total, 32) and out["pooled_text"].shape == (4, 32)
    assert out["logits"].shape == (total, 4)
    expected_seq = torch.cat([hidden[w, 1:1 + MAX_VIDEO_LEN][window_masks[w]] for w in range(3)])
    assert close(out["video_seq"], expected_seq)
    assert close(out["pooled_text"], pooled_text)
    assert close(out["logits"], expected_seq @ pooled_text.T, atol=1e-4)


def test_full_video_bg_retrieval_pools_each_window_with_cls_masked(tokenizer):
    # by hand: the hidden states of each window with [CLS] masked out, averaged over its valid seconds and the
    # video [SEP] (position Lv + 1)
    model, caps, cmasks, windows, window_masks, out, hidden, pooled_text = windowed_run(
        MMFusionSeparateFullVideoBGRetrieval, tokenizer, 2)  # 2 captions
    assert set(out) == {"pooled_video", "pooled_text"}
    assert out["pooled_video"].shape == (3, 32) and out["pooled_text"].shape == (2, 32)
    for w in range(3):
        rows = torch.cat([hidden[w, 1:1 + MAX_VIDEO_LEN][window_masks[w]], hidden[w, MAX_VIDEO_LEN + 1:]])
        assert rows.shape[0] == int(window_masks[w].sum()) + 1
        assert close(out["pooled_video"][w], rows.mean(dim=0)), w
    assert close(out["pooled_text"], pooled_text)
    with pytest.raises(ValueError, match="takes one video per batch, got 2; set fairseq.dataset.batch_size: 1"):
        model(caps[None].repeat(2, 1, 1), cmasks[None].repeat(2, 1, 1), windows[None].repeat(2, 1, 1, 1),
              window_masks[None].repeat(2, 1, 1))


# ---------------------------------------------------------------- loading through from_pretrained


def test_build_from_saved_folder(bert_dir):
    saved = BertModel.from_pretrained(bert_dir).state_dict()
    model = lookup("model", "MMFusionSeparateActionLocalization")(
        run_config(bert_dir, video_layers=2, model_cls="MMFusionSeparateActionLocalization"))
    assert model.dummy_caps.tolist() == [[CLS, SEP, PAD, SEP]]  # ids from the folder's vocabulary
    assert model.is_train is False and model.hidden_size == 32
    video_bert = model.video_encoder.bert
    assert len(video_bert.encoder.layer) == 2 and video_bert.config.max_video_len == MAX_VIDEO_LEN
    for key, value in video_bert.state_dict().items():
        assert torch.equal(value, saved[key]), key
    for key, value in model.text_encoder.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert len(model.text_encoder.encoder.layer) == 3
    assert torch.equal(video_bert.embeddings.position_ids[0], torch.arange(128))
    assert torch.equal(model.video_encoder.videomlp.LayerNorm.weight, torch.ones(32))
    caps, cmasks, vfeats, vmasks = make_batch()
    with torch.no_grad():
        out = model.eval()(caps[None], cmasks[None], vfeats[None], vmasks[None])
    assert out["logits"].shape == (int(vmasks.sum()), 4)


def test_encoder_from_pretrained_keeps_first_layers(bert_dir):
    config = BertConfig.from_pretrained(bert_dir)
    config.num_hidden_layers, config.max_video_len = 1, MAX_VIDEO_LEN
    encoder = MMBertForEncoder.from_pretrained(bert_dir, config=config)
    saved = BertModel.from_pretrained(bert_dir).state_dict()
    assert len(encoder.bert.encoder.layer) == 1
    encoder.eval()
    ids, video, mask = torch.tensor([[CLS, SEP]]), torch.randn(1, 4, FEAT), torch.ones(1, 6)
    last, pooled, states = encoder(ids, video, mask, output_hidden_states=True)
    assert last.shape == (1, 6, 32) and pooled.shape == (1, 32) and len(states) == 2
    assert torch.equal(states[-1], last) and len(encoder(ids, video, mask)) == 2
    for key in ("encoder.layer.0.output.dense.weight", "pooler.dense.weight", "embeddings.word_embeddings.weight"):
        assert torch.equal(encoder.bert.state_dict()[key], saved[key]), key


def test_bad_config_errors(bert_dir, tokenizer):
    with pytest.raises(ValueError, match="only 3 layers"):
        MMFusionSeparate(run_config(bert_dir, video_layers=4))
    bad = run_config("unused")
    bad.model.video_encoder_cls = "MMBertForMFMMLM"
    with pytest.raises(ValueError, match="MMBertForEncoder"):
        MMFusionSeparate(bad, bert_config=tiny_bert_config())
    with pytest.raises(ValueError, match=r"^model.model_cls: MMFusionJoint names no model; valid: "
                                         r"MMFusionSeparate, MMFusionSeparateActionLocalization, "
                                         r"MMFusionSeparateActionSegmentation, MMFusionSeparateFullVideoBGRetrieval$"):
        lookup("model", "MMFusionJoint")
    model = MMFusionSeparate(run_config("unused"), bert_config=tiny_bert_config(), tokenizer=tokenizer)
    caps, cmasks, vfeats, vmasks = make_batch()
    with pytest.raises(ValueError, match="vmasks"):
        model(caps, cmasks, vfeats, vmasks[:, :5])
