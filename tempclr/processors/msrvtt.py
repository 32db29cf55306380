"""MSR-VTT text-to-video retrieval and MSR-VTT multiple-choice QA processors.

Retrieval (the JSFusion 1k-A test set; training on the 9k train videos):

* :class:`MSRVTTMetaProcessor`: the split csv (``train_path`` / ``val_path`` / ``test_path``), read with the
  ``csv`` module.  Every row needs ``video_id``; a csv with a ``sentence`` column (the JSFusion test csv
  ``key,vid_key,video_id,sentence``) gives items ``(video_id, sentence)``, one without it (``MSRVTT_train.csv``)
  gives ``(video_id, video_id)`` (the text processor then draws one of the video's captions).  On the train split
  ``full_test_path`` + ``jsfusion_path`` add the videos of the full test csv that the JSFusion test does not use,
  and ``dup`` repeats the training list ``dup`` times.
* :class:`MSRVTTTextProcessor`: on the train split with ``json_path`` (``MSRVTT_data.json``,
  ``{"sentences": [{"video_id", "caption"}, ...]}``) a random caption of the video (Python ``random``, which the
  dataset seeds per item on the test split); otherwise the text id itself.  Token ids, no special tokens.

QA (JSFusion multiple choice, ``MSR_MC_test.csv``, tab-separated, columns ``vid_key a1 a2 a3 a4 a5 answer``):

* :class:`MSRVTTQAMetaProcessor`: items ``(video_id, (answer, [a1, ..., a5]))`` with ``vid_key`` ``msrN`` read
  as the video ``videoN``; candidates are kept as written (``NA`` is the string "NA").
* :class:`MSRVTTQATextProcessor`: the five candidates as five token-id lists (the item itself is not changed).
* :class:`MSRVTTQAAligner`: one video and five captions: ``caps [5, max_len - max_video_len]``, ``cmasks``,
  ``vfeats [max_video_len, D]``, ``vmasks``, ``answers [1]`` int64, ``video_id``.

Every video whose ``<vfeat_dir>/<video_id>.npy`` is missing is dropped before anything runs; the count and the
first ids are printed.  A malformed file, header or row is an error naming the file, the row and the fix.
"""
from __future__ import annotations

import csv
import json
import os
import random
from collections import defaultdict
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from tempclr.utils.config_schema import cfg_get
from tempclr.utils.fileio import check_name
from tempclr.utils.registry import register

from .processor import SPLIT_PATH_KEYS, Aligner, MetaProcessor, TextProcessor, require_file

__all__ = ["MSRVTTMetaProcessor", "MSRVTTTextProcessor", "MSRVTTQAMetaProcessor", "MSRVTTQATextProcessor",
           "MSRVTTQAAligner", "read_csv_rows", "drop_missing_features", "QA_CANDIDATES"]

MSRVTT_HOW = ("MSRVTT_train.csv, MSRVTT_JSFUSION_test.csv, MSRVTT_FULL_test.csv and MSRVTT_data.json are the "
              "MSR-VTT files of HowTo100M / MIL-NCE (README 'Real data and checkpoints'); for the demo run "
              "`python scripts/make_demo_msrvtt.py` and use configs/demo/test_vtt_zs.yaml")
QA_HOW = ("MSR_MC_test.csv is the JSFusion multiple-choice test (tab-separated: vid_key, a1..a5, answer); for the "
          "demo run `python scripts/make_demo_msrvtt.py` and use configs/demo/test_vttqa_zs.yaml")
QA_CANDIDATES = 5
SHOWN_IDS = 5  # how many ids a drop message lists


def read_csv_rows(path: str, required: Sequence[str], delimiter: str = ",", how: str = MSRVTT_HOW
                  ) -> Tuple[List[str], List[Tuple[int, Dict[str, str]]]]:
    """``(header, [(row number, {column: value}), ...])`` of a csv/tsv file read with the ``csv`` module (every
    value stays a string: "NA" is "NA").  Row numbers count the header as row 1, as a spreadsheet shows them.

    A file without a header, a header lacking a ``required`` column, a row with another number of fields than
    the header, or an empty ``required`` value is a ``ValueError`` naming the file and the row."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: the file is empty; it needs a header with the columns "
                             f"{', '.join(required)}; {how}")
        header = [name.strip() for name in header]
        missing = [name for name in required if name not in header]
        if missing:
            sep = "tab" if delimiter == "\t" else repr(delimiter)
            raise ValueError(f"{path}: the header {header} lacks the column(s) {', '.join(missing)} (fields "
                             f"separated by {sep}); {how}")
        rows = []
        for number, fields in enumerate(reader, start=2):
            if not fields or all(not field.strip() for field in fields):
                continue  # a blank line (a trailing newline) is no row
            if len(fields) != len(header):
                raise ValueError(f"{path}, row {number}: {len(fields)} fields for the {len(header)} columns of "
                                 f"the header ({fields!r}); fix the row")
            row = dict(zip(header, fields))
            empty = [name for name in required if row[name] == ""]
            if empty:
                raise ValueError(f"{path}, row {number}: empty {', '.join(empty)}; fix the row")
            rows.append((number, row))
    return header, rows


def drop_missing_features(items: Sequence[Any], video_ids: Sequence[str], vfeat_dir: str, who: str,
                          source: str) -> List[Any]:
    """The ``items`` whose video (``video_ids[i]``) has ``<vfeat_dir>/<id>.npy``, in order; the dropped ones are
    printed with their count and first ids.  None left is an error."""
    if not os.path.isdir(vfeat_dir):
        raise NotADirectoryError(f"{vfeat_dir} (dataset.vfeat_dir) is not a folder; it must hold one S3D feature "
                                 f"file <video_id>.npy per video")
    available = {name[:-4] for name in os.listdir(vfeat_dir) if name.endswith(".npy")}
    kept = [item for item, vid in zip(items, video_ids) if vid in available]
    missing = [vid for vid in video_ids if vid not in available]
    if missing:
        distinct = list(dict.fromkeys(missing))
        shown = ", ".join(distinct[:SHOWN_IDS]) + (", ..." if len(distinct) > SHOWN_IDS else "")
        print(f"{who}: {len(missing)} row(s) of {source} dropped: {len(distinct)} video(s) have no feature file in "
              f"{vfeat_dir} (first: {shown})", flush=True)
    if not kept:
        raise ValueError(f"{who}: no row of {source} has a feature file in {vfeat_dir}; extract the features or "
                         "fix dataset.vfeat_dir")
    return kept


def _vfeat_dir(config: Any) -> str:
    value = cfg_get(config, "vfeat_dir")
    if value is None:
        raise ValueError("MSR-VTT needs 'dataset.vfeat_dir' (one S3D <video_id>.npy per video)")
    return require_file(str(value), "vfeat_dir", "extract one S3D feature file <video_id>.npy per video there")


def _split_file(meta: MetaProcessor, config: Any, how: str) -> str:
    return require_file(meta._get_split_path(config), SPLIT_PATH_KEYS[meta.split], how)


def _video_ids(path: str, key: str) -> List[Tuple[int, str]]:
    _, rows = read_csv_rows(require_file(path, key, MSRVTT_HOW), ["video_id"])
    return [(number, check_name(row["video_id"], path, number, "video_id")) for number, row in rows]


@register("meta_processor")
class MSRVTTMetaProcessor(MetaProcessor):
    """MSR-VTT retrieval items ``(video_id, sentence)`` (test csv with sentences) or ``(video_id, video_id)``
    (train csv), in file order; videos without features dropped (printed)."""

    def __init__(self, config: Any):
        super().__init__(config)
        path = _split_file(self, config, MSRVTT_HOW)
        header, rows = read_csv_rows(path, ["video_id"])
        has_sentence = "sentence" in header
        data: List[Tuple[str, str]] = []
        for number, row in rows:
            video_id = check_name(row["video_id"], path, number, "video_id")
            if has_sentence and row["sentence"] == "":
                raise ValueError(f"{path}, row {number}: empty sentence; fix the row")
            data.append((video_id, row["sentence"] if has_sentence else video_id))
        if self.split == "train":
            full_test, jsfusion = cfg_get(config, "full_test_path"), cfg_get(config, "jsfusion_path")
            if (full_test is None) != (jsfusion is None):
                raise ValueError("dataset.full_test_path and dataset.jsfusion_path go together (the full-test videos "
                                 "that the JSFusion test does not use join the training set); set both or neither")
            if full_test is not None:
                used = {vid for _, vid in _video_ids(str(jsfusion), "jsfusion_path")}
                added = [vid for _, vid in _video_ids(str(full_test), "full_test_path") if vid not in used]
                data += [(vid, vid) for vid in added]
                print(f"{type(self).__name__}: {len(added)} video(s) of {full_test} outside {jsfusion} added to "
                      "the training set", flush=True)
            dup = cfg_get(config, "dup")
            if dup is not None:
                if int(dup) < 1:
                    raise ValueError(f"dataset.dup={dup} must be >= 1 (how many times the training list repeats)")
                data = data * int(dup)
        vfeat_dir = _vfeat_dir(config)
        self.data = drop_missing_features(data, [vid for vid, _ in data], vfeat_dir, type(self).__name__, path)
        if not has_sentence:
            if cfg_get(config, "json_path") is None or self.split != "train":
                raise ValueError(f"{path} has no 'sentence' column, so its captions come from dataset.json_path "
                                 "(MSRVTT_data.json), which only the train split reads; set json_path, or use a csv "
                                 "with sentences (the original trained on the video id as the caption)")
            self._check_captions(str(cfg_get(config, "json_path")))

    def _check_captions(self, json_path: str) -> None:
        captions = read_msrvtt_captions(json_path)
        without = sorted({vid for vid, _ in self.data if vid not in captions})
        if without:
            raise ValueError(f"{json_path} (dataset.json_path) has no caption for {len(without)} training "
                             f"video(s) (first: {', '.join(without[:SHOWN_IDS])}); use the MSRVTT_data.json that "
                             "belongs to the train csv")

    def __getitem__(self, idx: int) -> Tuple[str, str]:
        return self.data[idx]


def read_msrvtt_captions(json_path: str) -> Dict[str, List[str]]:
    """``{video_id: [caption, ...]}`` of ``MSRVTT_data.json`` (its ``sentences`` list, in file order)."""
    path = require_file(json_path, "json_path", MSRVTT_HOW)
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    sentences = data.get("sentences") if isinstance(data, dict) else None
    if not isinstance(sentences, list):
        raise ValueError(f"{path} (dataset.json_path): expected {{\"sentences\": [{{\"video_id\": ..., "
                         f"\"caption\": ...}}, ...]}}; {MSRVTT_HOW}")
    captions: Dict[str, List[str]] = defaultdict(list)
    for index, sentence in enumerate(sentences):
        if not (isinstance(sentence, dict) and isinstance(sentence.get("video_id"), str)
                and isinstance(sentence.get("caption"), str)):
            raise ValueError(f"{path}: sentences[{index}] is {sentence!r}; each needs a string 'video_id' and "
                             "'caption'")
        captions[sentence["video_id"]].append(sentence["caption"])
    return dict(captions)


@register("text_processor")
class MSRVTTTextProcessor(TextProcessor):
    """Text id -> token ids: on the train split with ``json_path`` a random caption of video ``text_id``, else
    ``text_id`` itself (the test sentence)."""

    def __init__(self, config: Any):
        super().__init__(config)
        self.sentences = None
        json_path = cfg_get(config, "json_path")
        if json_path is not None and cfg_get(config, "split") == "train":
            self.sentences = read_msrvtt_captions(str(json_path))

    def __call__(self, text_id: str) -> List[int]:
        if self.sentences is not None:
            captions = self.sentences.get(text_id)
            if not captions:
                raise KeyError(f"dataset.json_path has no caption for video {text_id!r}")
            sentence = captions[random.randint(0, len(captions) - 1)]
        else:
            sentence = text_id
        return self.tokenizer(sentence, add_special_tokens=False)["input_ids"]


QA_COLUMNS = ["vid_key"] + [f"a{k}" for k in range(1, QA_CANDIDATES + 1)] + ["answer"]


def _qa_video_id(vid_key: str, path: str, number: int) -> str:
    if not vid_key.startswith("msr") or not vid_key[3:].isdigit():
        raise ValueError(f"{path}, row {number}: vid_key {vid_key!r} is not 'msr<number>' (the video "
                         "video<number>); fix the row")
    return check_name("video" + vid_key[3:], path, number, "video id")


def _qa_answer(value: str, path: str, number: int) -> int:
    text = value.strip()
    if not text.isdigit() or not 0 <= int(text) < QA_CANDIDATES:
        raise ValueError(f"{path}, row {number}: answer {value!r} is not a candidate index 0..{QA_CANDIDATES - 1}; "
                         "fix the row")
    return int(text)


@register("meta_processor")
class MSRVTTQAMetaProcessor(MetaProcessor):
    """MSR-VTT multiple-choice items ``(video_id, (answer, [a1, ..., a5]))`` from the tab-separated split file;
    questions whose video has no features are dropped (printed)."""

    def __init__(self, config: Any):
        super().__init__(config)
        path = _split_file(self, config, QA_HOW)
        _, rows = read_csv_rows(path, QA_COLUMNS, delimiter="\t", how=QA_HOW)
        data = []
        for number, row in rows:
            video_id = _qa_video_id(row["vid_key"], path, number)
            answer = _qa_answer(row["answer"], path, number)
            data.append((video_id, (answer, [row[f"a{k}"] for k in range(1, QA_CANDIDATES + 1)])))
        self.data = drop_missing_features(data, [vid for vid, _ in data], _vfeat_dir(config), type(self).__name__,
                                          path)

    def __getitem__(self, idx: int) -> Tuple[str, Tuple[int, List[str]]]:
        return self.data[idx]


@register("text_processor")
class MSRVTTQATextProcessor(TextProcessor):
    """``(answer, [a1, ..., a5])`` -> ``(answer, [token ids of a1, ..., of a5])`` (a new tuple: the meta
    processor's item is not modified; candidates already tokenized pass through)."""

    def __call__(self, text_ans: Tuple[int, Sequence[Any]]) -> Tuple[int, List[List[int]]]:
        answer, candidates = text_ans
        return answer, [self.tokenizer(c, add_special_tokens=False)["input_ids"] if isinstance(c, str) else list(c)
                        for c in candidates]


@register("aligner")
class MSRVTTQAAligner(Aligner):
    """One video and its candidate captions.

    Output: ``vfeats [max_video_len, D]`` float32 / ``vmasks [max_video_len]`` (the first ``max_video_len``
    seconds, as the clip aligner), ``caps [C, max_len - max_video_len]`` int64 / ``cmasks`` (one ``[CLS] [SEP]
    candidate [SEP]`` per candidate, C = 5), ``answers [1]`` int64 and ``video_id``.  ``wps`` is kept from the
    original's signature and unused."""

    def __call__(self, video_id: str, video_feature: np.ndarray, text_feature: Tuple[int, Sequence[Sequence[int]]],
                 wps: float = 0.7) -> Dict[str, Any]:
        answer, candidates = text_feature
        if len(video_feature) == 0:
            raise ValueError(f"MSRVTTQAAligner: video {video_id!r} has no feature rows")
        vfeats, vmasks = self._build_video_seq(video_feature)
        caps, cmasks = self._build_text_seqs(candidates)
        return {"caps": caps, "cmasks": cmasks, "vfeats": vfeats, "vmasks": vmasks,
                "answers": np.asarray([answer], dtype=np.int64), "video_id": video_id}
