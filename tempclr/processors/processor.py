"""Processor bases.

A dataset item is built by four pluggable parts, named by class in the YAML config:
``meta_processor[idx] -> (video_id, text_id)``, ``video_processor(video_id) -> features``,
``text_processor(text_id) -> token ids``, ``aligner(video_id, video_feature, text_feature) -> dict of arrays``.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tempclr.utils.bert_name import load_pretrained
from tempclr.utils.fileio import load_npy
from tempclr.utils.config_schema import cfg_get, dataset_setting
from tempclr.utils.registry import register


class Processor:
    """Base of every processor: holds nothing but its config."""

    def __init__(self, config: Any):
        self.config = config

    def __call__(self, *args: Any) -> Any:
        raise TypeError(f"{type(self).__name__} is a base class; use a concrete processor")


# which dataset key holds the split file of each split
SPLIT_PATH_KEYS = {"train": "train_path", "valid": "val_path", "test": "test_path"}


class MetaProcessor(Processor):
    """Indexes a split.  ``__getitem__`` returns ``(video_id, text_id)``."""

    def __init__(self, config: Any):
        super().__init__(config)
        self.split = cfg_get(config, "split")
        self.data: List[Any] = []

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, idx: int) -> Tuple[Any, Any]:
        return self.data[idx]

    def _get_split_path(self, config: Any) -> str:
        """``train_path`` / ``val_path`` / ``test_path`` for split train / valid / test."""
        key = SPLIT_PATH_KEYS.get(self.split)
        if key is None:
            raise ValueError(f"dataset.split must be train, valid or test, got {self.split!r}")
        path = cfg_get(config, key)
        if path is None:
            raise ValueError(f"split {self.split!r} needs 'dataset.{key}' in the config")
        return str(path)


def require_file(path: str, key: str, how: str) -> str:
    """Return ``path`` if it exists, else raise naming the config key and how to produce the file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} (dataset.{key}) does not exist; {how}")
    return path


@functools.lru_cache(maxsize=8)
def get_tokenizer(bert_name: str, use_fast: Optional[bool] = None):
    """The tokenizer of ``bert_name`` (a hub name or a local folder), cached per process."""
    from transformers import AutoTokenizer

    kwargs = {} if use_fast is None else {"use_fast": bool(use_fast)}
    return load_pretrained(AutoTokenizer, bert_name, **kwargs)


@register("text_processor")
class TextProcessor(Processor):
    """Caption string → token ids, no special tokens."""

    def __init__(self, config: Any):
        super().__init__(config)
        self.bert_name = str(dataset_setting(config, "bert_name"))
        self.tokenizer = get_tokenizer(self.bert_name, cfg_get(config, "use_fast"))

    def __call__(self, text: str) -> List[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def tokenize_each(self, texts: Sequence[str]) -> List[List[int]]:
        """One token-id list per string of ``texts`` (no special tokens), in order."""
        return [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


def nonfinite_row(features: np.ndarray) -> Optional[int]:
    """The first row (second) of ``features [T, D]`` holding a NaN or inf, or None when all are finite."""
    finite = np.isfinite(features)
    if finite.all():
        return None
    return int(np.argwhere(~finite)[0, 0])


@register("video_processor")
class VideoProcessor(Processor):
    """Video id → ``np.load(<vfeat_dir>/<id>.npy)``, ``[T, 512]``."""

    def __init__(self, config: Any):
        super().__init__(config)
        self.vfeat_dir = str(cfg_get(config, "vfeat_dir"))

    def __call__(self, video_id: str) -> np.ndarray:
        path = os.path.join(self.vfeat_dir, f"{video_id}.npy")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"video feature file {path} is missing (dataset.vfeat_dir); "
                                    "it must hold S3D features, one float16 [T, 512] .npy per video "
                                    "(README 'Real data and checkpoints')")
        features = load_npy(path, fix="re-extract this video's features")
        row = nonfinite_row(features)
        if row is not None:
            raise ValueError(f"{path}: NaN or inf in the video features (second {row}); re-extract this video's "
                             "features (scripts/check_data.py lists every such file)")
        return features


class Aligner:
    """Builds the fixed-size model inputs from features and token ids.

    Video: ``vfeats [max_video_len, D]`` float32 zero-filled, ``vmasks [max_video_len]`` bool.
    Text: ``caps [max_len - max_video_len]`` int64 = ``[CLS] [SEP] tokens [SEP] [PAD]...``, ``cmasks`` bool.
    The first ``[SEP]`` is the video side's separator; the model splits it out.
    """

    def __init__(self, config: Any):
        self.config = config
        self.max_video_len = int(dataset_setting(config, "max_video_len"))
        self.max_len = int(dataset_setting(config, "max_len"))
        self.max_text_len = self.max_len - self.max_video_len
        tokenizer = get_tokenizer(str(dataset_setting(config, "bert_name")),
                                  cfg_get(config, "use_fast"))
        self.cls_token_id = int(tokenizer.cls_token_id)
        self.sep_token_id = int(tokenizer.sep_token_id)
        self.pad_token_id = int(tokenizer.pad_token_id)

    def __call__(self, video_id: Any, video_feature: Any, text_feature: Any) -> Dict[str, Any]:
        raise TypeError(f"{type(self).__name__} is a base class; use a concrete aligner")

    def _build_video_seq(self, video_feature: np.ndarray,
                         video_clips: Optional[Dict[str, Sequence[int]]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Copy ``video_feature[start:end]`` for each clip consecutively into a zero ``[max_video_len, D]``
        buffer (the total is truncated to ``max_video_len``); ``None`` means one clip ``[0, min(T, max))``."""
        if video_clips is None:
            video_clips = {"start": [0], "end": [min(len(video_feature), self.max_video_len)]}
        dim = video_feature.shape[1]
        vfeats = np.zeros((self.max_video_len, dim), dtype=np.float32)
        vmasks = np.zeros((self.max_video_len,), dtype=bool)
        filled = 0
        for start, end in zip(video_clips["start"], video_clips["end"]):
            clip = video_feature[start:end][: self.max_video_len - filled]
            vfeats[filled: filled + len(clip)] = clip
            filled += len(clip)
            if filled >= self.max_video_len:
                break
        vmasks[:filled] = True
        return vfeats, vmasks

    def _build_window_seqs(self, video_feature: np.ndarray, starts: Sequence[int],
                           lengths: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
        """One :meth:`_build_video_seq` per window: window ``w`` holds ``video_feature[starts[w]:starts[w] +
        lengths[w]]``.  Returns ``vfeats [W, max_video_len, D]`` float32 and ``vmasks [W, max_video_len]`` bool."""
        vfeats, vmasks = [], []
        for start, length in zip(starts, lengths):
            window = video_feature[int(start):int(start) + int(length)]
            vfeat, vmask = self._build_video_seq(window, {"start": [0], "end": [len(window)]})
            vfeats.append(vfeat)
            vmasks.append(vmask)
        return np.stack(vfeats), np.stack(vmasks)

    def _build_text_seqs(self, token_lists: Sequence[Sequence[int]]) -> Tuple[np.ndarray, np.ndarray]:
        """One :meth:`_build_text_seq` per token-id list: ``caps [K, max_len - max_video_len]`` int64 and
        ``cmasks`` bool of the same shape."""
        if len(token_lists) == 0:
            raise ValueError(f"{type(self).__name__}: no text to build (an item needs at least one caption)")
        caps, cmasks = zip(*(self._build_text_seq(list(tokens)) for tokens in token_lists))
        return np.stack(caps), np.stack(cmasks)

    def _build_text_seq(self, text_feature: Any,
                        text_clip_indexes: Optional[Sequence[int]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """``[CLS] [SEP] tokens [SEP]`` padded to ``max_text_len``; tokens are the concatenated
        ``cap[i]`` of the listed clips (``text_feature`` a dict) or the list itself, truncated to
        ``max_text_len - 3``."""
        if isinstance(text_feature, dict):
            indexes = [0] if text_clip_indexes is None else text_clip_indexes
            tokens: List[int] = []
            for i in indexes:
                tokens.extend(text_feature["cap"][i])
        else:
            tokens = list(text_feature)
        tokens = tokens[: self.max_text_len - 3]
        ids = [self.cls_token_id, self.sep_token_id] + [int(t) for t in tokens] + [self.sep_token_id]
        caps = np.full((self.max_text_len,), self.pad_token_id, dtype=np.int64)
        caps[: len(ids)] = ids
        cmasks = np.zeros((self.max_text_len,), dtype=bool)
        cmasks[: len(ids)] = True
        return caps, cmasks
