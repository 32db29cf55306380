"""The demo's tiny BERT: a WordPiece vocabulary trained on the demo world's text, plus a 2-layer BERT with seeded
random weights, written as a folder that ``AutoTokenizer.from_pretrained`` / ``BertModel.from_pretrained`` load
offline.

The vocabulary is trained with the ``tokenizers`` WordPiece trainer (BERT normaliser, lower case, BERT
pre-tokeniser).  That trainer numbers the ``##x`` continuation characters in hash order, so ties between equally
frequent pairs fall differently from run to run; registering every ``##x`` before training (next to the special
tokens) fixes their ids and makes the trained vocabulary identical on every run.
"""
from __future__ import annotations

import os
import string
from typing import Sequence

from tempclr.utils.fileio import write_text_atomic

__all__ = ["SPECIAL_TOKENS", "TINY_BERT_CONFIG", "train_wordpiece_vocab", "write_tiny_bert"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")   # [PAD] = 0, as the aligners assume
TINY_BERT_CONFIG = dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512,
                        max_position_embeddings=512)
_BASE_ALPHABET = string.ascii_lowercase + string.digits + ".,'!?-"


def train_wordpiece_vocab(corpus: Sequence[str], max_vocab_size: int = 4000) -> list[str]:
    """Train a lower-cased WordPiece vocabulary on ``corpus`` lines; returns the tokens in id order
    (``SPECIAL_TOKENS`` first, then ``##x`` and ``x`` for every character, then learned pieces)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    normalizer = normalizers.BertNormalizer(lowercase=True)
    seen = {ch for line in corpus for ch in normalizer.normalize_str(line) if not ch.isspace()}
    alphabet = sorted(set(_BASE_ALPHABET) | seen)
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=max_vocab_size, min_frequency=1, show_progress=False, initial_alphabet=alphabet,
        special_tokens=list(SPECIAL_TOKENS) + ["##" + ch for ch in alphabet], continuing_subword_prefix="##")
    tokenizer.train_from_iterator(list(corpus), trainer=trainer)
    vocab = tokenizer.get_vocab()
    return sorted(vocab, key=vocab.__getitem__)


def write_tiny_bert(folder: str, corpus: Sequence[str], seed: int) -> dict:
    """Write ``vocab.txt``, the tokenizer files, ``config.json`` and ``model.safetensors`` into ``folder``.

    The model is ``BertModel`` with ``TINY_BERT_CONFIG`` and ``vocab_size = len(vocab)``, initialised after
    ``torch.manual_seed(seed)``.  Returns ``{"vocab_size": int, "files": [names]}``.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast
    from transformers.utils import logging as hf_logging

    os.makedirs(folder, exist_ok=True)
    vocab = train_wordpiece_vocab(corpus)
    vocab_path = os.path.join(folder, "vocab.txt")
    write_text_atomic(vocab_path, "".join(token + "\n" for token in vocab))
    tokenizer = BertTokenizerFast(vocab=vocab_path, do_lower_case=True,
                                  model_max_length=TINY_BERT_CONFIG["max_position_embeddings"])
    if len(tokenizer) != len(vocab):
        raise RuntimeError(f"{vocab_path}: tokenizer built from it has {len(tokenizer)} tokens, expected {len(vocab)}")
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), pad_token_id=0, **TINY_BERT_CONFIG)
    torch.manual_seed(seed)
    model = BertModel(config)
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()   # one "Writing model shards" bar per call otherwise
    try:
        model.save_pretrained(folder)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    return {"vocab_size": len(vocab), "files": sorted(os.listdir(folder))}
