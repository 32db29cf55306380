"""A tiny VideoCLIP world for the raw-video tests: a BERT folder with only config.json + vocab.txt, a fairseq-style
checkpoint of a random model, a random S3D in the release layout, and a config naming them."""
from __future__ import annotations

import torch
from omegaconf import OmegaConf
from transformers import BertConfig

# special tokens away from bert-base's 0/101/102, so hard-coded ids would fail
VOCAB = ["[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]", "crack", "the", "eggs", "into", "a", "bowl", "whisk",
         "add", "flour", "and", "milk", "pour", "batter", "pan", "flip"]


def tiny_bert_config(vocab_size: int = len(VOCAB)) -> BertConfig:
    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=128, pad_token_id=2)


def config_only_bert(folder, bert_config: BertConfig, vocab) -> str:
    """A BERT folder with config.json and vocab.txt only: no weights, no tokenizer files."""
    folder.mkdir(parents=True, exist_ok=True)
    bert_config.to_json_file(str(folder / "config.json"))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return str(folder)


def run_config(bert_name: str, save_path: str, video_layers: int = 1):
    return OmegaConf.create({
        "dataset": {"bert_name": bert_name, "max_video_len": 32, "max_len": 96},
        "model": {"model_cls": "MMFusionSeparate", "video_encoder_cls": "MMBertForEncoder",
                  "text_encoder_cls": "BertModel", "num_hidden_video_layers": video_layers},
        "eval": {"save_path": save_path},
    })


def make_world(root, seed: int = 3) -> dict:
    """Write the world under ``root``; returns its paths and the checkpoint's state (fp16, ``mmmodel.`` keys)."""
    from tempclr.models import MMFusionSeparate
    from tempclr.processors.models.s3dg import S3D

    bert = config_only_bert(root / "bert", tiny_bert_config(), VOCAB)
    config = run_config(bert, str(root / "ckpt"))
    torch.manual_seed(seed)
    trained = MMFusionSeparate(config, bert_config=tiny_bert_config())
    for parameter in trained.parameters():
        parameter.data.normal_(0, 0.2)
    (root / "ckpt").mkdir()
    state = {"mmmodel." + k: v.half() for k, v in trained.state_dict().items()}
    torch.save({"model": state, "extra_state": {"epoch": 1}}, root / "ckpt" / "checkpoint_best.pt")
    torch.manual_seed(seed + 1)
    torch.save(S3D(None).state_dict(), root / "s3d.pth")
    config_path = root / "how2.yaml"
    config_path.write_text(OmegaConf.to_yaml(config))
    return {"root": root, "config": str(config_path), "state": state, "s3d": str(root / "s3d.pth")}
