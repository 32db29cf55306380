"""Tokenise HowTo100M-style captions into ShardedTensor text shards that follow the video shards.
Run ``tempclr-shard-features`` (``scripts/shard_feature.py``) first: this reads its ``{split}_meta.pkl``.

Input: a caption file, ``.json`` (``id -> {"start": [s], "end": [s], "text": [str]}``) or ``.pkl`` (the same dict,
or, as the caption dedup step writes it, ``id -> json string`` of it), and a BERT tokenizer: a folder or a hub name
for ``AutoTokenizer.from_pretrained``, or a folder holding only ``vocab.txt``.  Each caption is cut to its first
``max_chars`` = 96 characters and tokenised without special tokens; non-string text gives no tokens.  Output in
``shard_dir``, for each split and shard ``k`` of the video meta, with ``p = <shard_dir>/<prefix>{split}_<k>``:

- ``p.startends_{starts,data}.npy``: float32 ``[n_captions, 2]`` per video, ``[start, end]`` in seconds;
- ``p.caps_ids_{starts,data}.npy``: int32 ``[n_captions, 32]`` per video, token ids truncated to 32, padded with -1.

Every video of the shard metas must have captions (equal-length start/end/text lists) and the tokenizer must load
before anything is written; the new caption shards of the prefix are written into a staging folder beside
``shard_dir`` and moved into place as a whole, so a failing run leaves the earlier caption shards as they were.

Usage::

    tempclr-pretokenize --captions data/how2/raw_caption_dedup.pkl \\
        --tokenizer bert-base-uncased --shard-dir data/feat/feat_how2_s3d_shard \\
        [--prefix raw_caption_dedup.bert-base-uncased.]
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Sequence

import numpy as np

from tempclr.utils.bert_name import load_pretrained
from tempclr.utils.fileio import check_output_dir, load_captions, staged_output_set
from tempclr.utils.safe_pickle import load_pickle
from tempclr.utils.shardedtensor import ShardedTensor

__all__ = ["load_captions", "load_bert_tokenizer", "tokenize_captions", "caption_arrays", "pretokenize",
           "default_prefix"]

PAD_ID = -1


def _video_captions(captions: dict[str, Any], video_id: str, caption_path: str) -> dict[str, list]:
    if video_id not in captions:
        raise KeyError(f"{caption_path}: no captions for video {video_id!r}, which is in the video shards; "
                       "use a caption file covering every listed video or remove it from the split list")
    entry = captions[video_id]
    if isinstance(entry, str):
        entry = json.loads(entry)
    lengths = {key: len(entry.get(key, [])) for key in ("start", "end", "text")}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{caption_path}: video {video_id!r} has start/end/text lists of lengths {lengths}; "
                         "they must be equal")
    return entry


def tokenize_captions(texts: Sequence[Any], tokenizer: Any, max_chars: int = 96) -> list[list[int]]:
    """Token ids per caption: text cut to ``max_chars`` characters, no special tokens; non-strings give []."""
    ids: list[list[int]] = [[] for _ in texts]
    positions = [i for i, text in enumerate(texts) if isinstance(text, str)]
    if positions:
        encoded = tokenizer([texts[i][:max_chars] for i in positions], add_special_tokens=False)["input_ids"]
        for i, token_ids in zip(positions, encoded):
            ids[i] = list(token_ids)
    return ids


def caption_arrays(entry: dict[str, list], token_ids: list[list[int]],
                   max_tokens: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``(startends float32 [n, 2], caps_ids int32 [n, max_tokens])`` of one video, ids padded with -1."""
    startends = np.stack([np.asarray(entry["start"], dtype=np.float32),
                          np.asarray(entry["end"], dtype=np.float32)], axis=1).reshape(-1, 2)
    caps = np.full((len(token_ids), max_tokens), PAD_ID, dtype=np.int32)
    for row, ids in enumerate(token_ids):
        ids = ids[:max_tokens]
        caps[row, :len(ids)] = ids
    return startends, caps


def default_prefix(caption_path: str, tokenizer_name: str) -> str:
    """``<caption file stem>.<tokenizer name>.``, e.g. ``raw_caption_dedup.bert-base-uncased.``."""
    stem = os.path.splitext(os.path.basename(caption_path))[0]
    return f"{stem}.{os.path.basename(os.path.normpath(tokenizer_name))}."


def load_bert_tokenizer(name_or_path: str) -> Any:
    """``AutoTokenizer.from_pretrained(name_or_path)``; a folder holding only a BERT ``vocab.txt`` (no
    ``tokenizer.json``, ``tokenizer_config.json`` or ``config.json`` to name the class) is read as a lower-casing
    ``BertTokenizerFast`` vocabulary."""
    from transformers import AutoTokenizer, BertTokenizerFast

    describing = ("tokenizer.json", "tokenizer_config.json", "config.json")
    vocab_path = os.path.join(name_or_path, "vocab.txt")
    if os.path.isdir(name_or_path) and os.path.isfile(vocab_path) and not any(
            os.path.isfile(os.path.join(name_or_path, name)) for name in describing):
        # transformers 5.x: vocab=, not vocab_file= (which silently builds a 5-token vocabulary)
        return BertTokenizerFast(vocab=vocab_path, do_lower_case=True)
    return load_pretrained(AutoTokenizer, name_or_path, "--tokenizer")


def _read_meta(shard_dir: str, split: str) -> dict[int, list[str]]:
    path = os.path.join(shard_dir, f"{split}_meta.pkl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: shard the videos first (tempclr-shard-features / "
                                "scripts/shard_feature.py), "
                                "the text shards follow the video shards")
    return load_pickle(path)


def _is_caption_shard_file(name: str, prefix: str, splits: Sequence[str]) -> bool:
    if not name.startswith(prefix):
        return False
    rest = name[len(prefix):]
    return any(re.fullmatch(rf"{re.escape(split)}_\d+\.(startends|caps_ids)_(starts|data)\.npy", rest)
               for split in splits)


def pretokenize(caption_path: str, tokenizer_name: str, shard_dir: str, prefix: str | None = None,
                max_tokens: int = 32, max_chars: int = 96,
                splits: Sequence[str] = ("train", "val")) -> dict[str, int]:
    """Write the ``.startends`` and ``.caps_ids`` shards for ``splits``; returns ``{split: n_captions}``."""
    prefix = default_prefix(caption_path, tokenizer_name) if prefix is None else prefix
    if os.sep in prefix or (os.altsep and os.altsep in prefix) or prefix in (".", ".."):
        raise ValueError(f"--prefix {prefix!r}: the prefix starts file names inside --shard-dir and may not hold "
                         "a path separator")
    metas = {split: _read_meta(shard_dir, split) for split in splits}
    check_output_dir(shard_dir, "--shard-dir")
    captions = load_captions(caption_path)
    entries = {}
    for split, meta in metas.items():  # every video is checked before anything is tokenised or written
        for k in sorted(meta):
            for video_id in meta[k]:
                entries[video_id] = _video_captions(captions, video_id, caption_path)
    tokenizer = load_bert_tokenizer(tokenizer_name)
    counts = {}
    with staged_output_set(shard_dir, lambda name: _is_caption_shard_file(name, prefix, splits)) as staging:
        for split, meta in metas.items():
            counts[split] = 0
            for k in sorted(meta):
                startends, caps = [], []
                for video_id in meta[k]:
                    entry = entries[video_id]
                    times, ids = caption_arrays(entry, tokenize_captions(entry["text"], tokenizer, max_chars),
                                                max_tokens)
                    startends.append(times)
                    caps.append(ids)
                    counts[split] += len(ids)
                base = os.path.join(staging, f"{prefix}{split}_{k}")
                ShardedTensor.from_list(startends).save(base + ".startends")
                ShardedTensor.from_list(caps).save(base + ".caps_ids")
    return counts
