"""Ids read from data files become file names inside a folder (``<vfeat_dir>/<id>.npy``,
``<annotation_path>/<task>_<vid>.csv``): an id with a separator, ``..``, an absolute path or NUL is an error naming
the file and the row, before anything is read or written through it."""
from __future__ import annotations

import json
import os
import pickle
import re

import numpy as np
import pytest
from omegaconf import OmegaConf

from tempclr.processors.crosstask_release import get_vids
from tempclr.processors.dedupprocessor import CaptionDedupProcessor
from tempclr.processors.dsprocessor import YoucookMetaProcessor
from tempclr.processors.sharding import shard_features
from tempclr.utils.fileio import check_name, contained_path

BAD_IDS = {"a/b": "holds a path separator", "../secret": "holds a path separator", "..": "is a relative folder",
           "/etc/passwd": "is an absolute path", "a\0b": "holds a NUL character", "a\nb": "holds a control character",
           "": "is empty", ".": "is a relative folder"}


@pytest.mark.parametrize("name", sorted(BAD_IDS))
def test_ids_that_leave_their_folder_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match=rf"^list\.txt, row 3: video id {re.escape(repr(name))} "
                                         rf"{BAD_IDS[name]}.*fix the id"):
        contained_path(str(tmp_path), name, "list.txt", 3, "video id")


def test_plain_ids_stay_as_they_are(tmp_path):
    for name in ("vid00", "-KcHY1ZWfZY", "a..b", "x.npy", "ab_c1", "caf\u00e9"):
        assert contained_path(str(tmp_path), name, "list.txt", 1) == os.path.join(str(tmp_path), name)
    assert check_name("vid", "f", None) == "vid"
    with pytest.raises(ValueError, match=r"^captions\.pkl: id 3 is a int, not a string"):
        check_name(3, "captions.pkl", None)


@pytest.mark.parametrize("column, value, what", [(0, "../../tmp/x", "task id"), (1, "../features/v", "video id"),
                                                 (1, "/abs/v", "video id")])
def test_crosstask_csv_names_the_row(tmp_path, column, value, what):
    fields = ["113766", "vid0", "https://www.youtube.com/watch?v=vid0"]
    fields[column] = value
    csv = tmp_path / "videos.csv"
    csv.write_text("113766,okvid,https://x\n\n" + ",".join(fields) + "\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(csv))}, row 3: {what} {re.escape(repr(value))}"):
        get_vids(str(csv))


def test_youcook_record_id_names_the_record(tmp_path, vocab_dir):
    (tmp_path / "features").mkdir()
    np.save(tmp_path / "features" / "vid.npy", np.zeros((4, 8), np.float32))
    records = [{"id": "../features/vid_0", "caption": "b"}, {"id": "vid_0", "caption": "a"}]
    pkl = tmp_path / "youcook_val.pkl"
    pkl.write_bytes(pickle.dumps(records))
    (tmp_path / "annotations.json").write_text(json.dumps({"database": {}}))
    config = OmegaConf.create({"test_path": str(pkl), "trainval_annotation": str(tmp_path / "annotations.json"),
                               "vfeat_dir": str(tmp_path / "features"), "bert_name": vocab_dir, "split": "test",
                               "max_video_len": 32, "max_len": 96})
    with pytest.raises(ValueError, match=rf"^{re.escape(str(pkl))}, row 0: video id \(of the record id\) "
                                         r"'\.\./features/vid' holds a path separator"):
        YoucookMetaProcessor(config)


def test_shard_list_entry_is_refused_before_any_shard_is_written(tmp_path):
    feat_dir = tmp_path / "feat"
    feat_dir.mkdir()
    np.save(feat_dir / "vid0.npy", np.zeros((3, 4), np.float16))
    np.save(tmp_path / "outside.npy", np.zeros((3, 4), np.float16))
    train, val = tmp_path / "train.lst", tmp_path / "val.lst"
    train.write_text("vid0\n\n../outside\n")
    val.write_text("vid0\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(train))}, row 3: video id '\.\./outside' holds a path"):
        shard_features(str(feat_dir), str(train), str(val), str(tmp_path / "shards"))
    assert not (tmp_path / "shards").exists()


def test_dedup_feature_lookup_names_the_caption_file(tmp_path):
    captions = tmp_path / "raw_caption.json"
    captions.write_text(json.dumps({"../outside": {"start": [0.0], "end": [1.0], "text": ["pour milk"]}}))
    (tmp_path / "feat").mkdir()
    with pytest.raises(ValueError, match=rf"^{re.escape(str(captions))}: video id '\.\./outside' holds a path"):
        CaptionDedupProcessor(str(captions), feat_dir=str(tmp_path / "feat"))()
