"""Every pickle tempclr reads may only rebuild data: a file whose unpickling would run code (here: create a marker
file) is refused by each loader with an error naming the file and the global, and the marker never appears.  Data
files, the released checkpoint layout and fairseq-train checkpoints still load."""
from __future__ import annotations

import argparse
import collections
import json
import os
import pickle
import shlex

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from conftest import ROOT  # noqa: E402
from tempclr.evaluators.evaluator import load_predictions  # noqa: E402
from tempclr.processors import pretokenization  # noqa: E402
from tempclr.processors.dsprocessor import YoucookMetaProcessor  # noqa: E402
from tempclr.processors.how2processor import read_shard_meta  # noqa: E402
from tempclr.processors.models.s3dg import Sentence_Embedding  # noqa: E402
from tempclr.tasks.retritask import RetriTask  # noqa: E402
from tempclr.utils.checkpoint import checkpoint_progress, load_checkpoint_state, prepare_save_dir  # noqa: E402
from tempclr.utils.safe_pickle import (CHECKPOINT_GLOBALS, DATA_GLOBALS, RefusedPickleError, load_npy_object_array,  # noqa: E402
                                       load_pickle)
from tempclr.utils.save_dir_lock import release_save_dir  # noqa: E402
from tempclr_cli import check_data  # noqa: E402


class OpenMarker:
    """Unpickling it calls ``open(marker, "w")``: the marker file appears if the loader runs it."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class SystemMarker(OpenMarker):
    """Unpickling it runs ``touch marker`` through ``os.system``."""

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def refused(path, name: str = "io.open") -> str:
    """The start of the refusal for ``path`` naming ``name``, as a regex."""
    import re

    return rf"^{re.escape(str(path))}: refused to load '{re.escape(name)}' \(a (pickle|checkpoint) may only hold data"


def write_payload(path, payload) -> str:
    with open(path, "wb") as f:
        pickle.dump(payload, f, protocol=4)
    return str(path)


# ------------------------------------------------------------------------------------------ the loader itself


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_data_of_every_protocol_loads(tmp_path, protocol):
    data = {"list": [1, 2.5, "x", None, True], "tuple": (1, 2), "set": {1, 2}, "frozenset": frozenset("ab"),
            "bytes": b"\x00\xff", "bytearray": bytearray(b"ab"), "complex": 1 + 2j, "range": range(3),
            "ordered": collections.OrderedDict(b=1, a=2), "array": np.arange(6, dtype=np.float16).reshape(2, 3),
            "strings": np.array(["ab", "c"]), "objects": np.array(["word", 3], dtype=object),
            "record": np.zeros(2, dtype=[("start", "f4"), ("end", "f4")]), "scalar": np.float64(1.5),
            "int": np.int32(7), "dtype": np.dtype("int16")}
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    loaded = load_pickle(str(path))
    assert loaded.keys() == data.keys()
    for key, value in data.items():
        if isinstance(value, np.ndarray):
            assert loaded[key].dtype == value.dtype and loaded[key].tolist() == value.tolist(), key
        else:
            assert loaded[key] == value and type(loaded[key]) is type(value), key


@pytest.mark.parametrize("payload, name", [(OpenMarker, "io.open"), (SystemMarker, "posix.system")])
def test_a_payload_anywhere_in_a_pickle_is_refused_before_it_runs(tmp_path, payload, name):
    marker = tmp_path / "marker"
    path = write_payload(tmp_path / "youcook_val.pkl", [{"id": "a", "caption": [payload(marker)]}])
    with pytest.raises(RefusedPickleError, match=refused(path, name)) as error:
        load_pickle(path)
    assert "was this file made by tempclr" in str(error.value).lower()
    assert not marker.exists()


def test_a_damaged_pickle_is_named(tmp_path):
    path = tmp_path / "meta.pkl"
    path.write_bytes(pickle.dumps({"a": [1, 2]})[:-5])
    with pytest.raises(ValueError, match=rf"^{path}: not a readable pickle"):
        load_pickle(str(path))


# ------------------------------------------------------------------------------------------ each data loader


def test_youcook_pickle_is_refused_by_the_processor_and_by_tempclr_check(tmp_path, vocab_dir, capsys):
    marker = tmp_path / "marker"
    pkl = write_payload(tmp_path / "youcook_val.pkl", [{"id": "v_0", "caption": "x", "2d": OpenMarker(marker)}])
    (tmp_path / "annotations.json").write_text(json.dumps({"database": {}}))
    (tmp_path / "features").mkdir()
    dataset = {"test_path": pkl, "trainval_annotation": str(tmp_path / "annotations.json"),
               "vfeat_dir": str(tmp_path / "features"), "bert_name": vocab_dir, "split": "test",
               "max_video_len": 32, "max_len": 96}
    with pytest.raises(RefusedPickleError, match=refused(pkl)):
        YoucookMetaProcessor(OmegaConf.create(dataset))
    config = tmp_path / "check.yaml"
    config.write_text(f"includes: {ROOT}/configs/demo/test_youcook_zs.yaml\n"
                      + OmegaConf.to_yaml(OmegaConf.create({"dataset": dataset})))
    assert check_data.main([str(config), "--max-items", "1"]) == 1
    assert f"{pkl}: refused to load 'io.open'" in capsys.readouterr().out
    assert not marker.exists()


def test_shard_meta_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = write_payload(tmp_path / "train_meta.pkl", {0: ["vid0", SystemMarker(marker)]})
    with pytest.raises(RefusedPickleError, match=refused(path, "posix.system")):
        read_shard_meta(str(tmp_path), "train")
    assert not marker.exists()


def test_caption_pickle_is_refused_by_pretokenize(tmp_path):
    marker = tmp_path / "marker"
    shard_dir = tmp_path / "shards"
    shard_dir.mkdir()
    for split in ("train", "val"):
        write_payload(shard_dir / f"{split}_meta.pkl", {0: ["vid0"]})
    captions = write_payload(tmp_path / "raw_caption.pkl",
                             {"vid0": {"start": [0.0], "end": [1.0], "text": [OpenMarker(marker)]}})
    with pytest.raises(RefusedPickleError, match=refused(captions)):
        pretokenization.pretokenize(captions, "no-tokenizer-needed", str(shard_dir))
    assert not marker.exists() and sorted(os.listdir(shard_dir)) == ["train_meta.pkl", "val_meta.pkl"]


def test_group_file_read_back_on_resume_is_refused(tmp_path):
    marker = tmp_path / "marker"
    task = RetriTask(OmegaConf.create({"fairseq": {"checkpoint": {"save_dir": str(tmp_path / "save")}}}))
    os.makedirs(task.retri_dir())
    path = write_payload(task.group_file(1), [["vid0", OpenMarker(marker)]])
    with pytest.raises(RefusedPickleError, match=refused(path)):
        task.retrive_candidates(1)
    assert not marker.exists()
    write_payload(task.group_file(2), [["vid0", "vid1"], ["vid2"]])
    assert task.read_group_file(2) == [["vid0", "vid1"], ["vid2"]]


def test_saved_predictions_and_the_s3d_word_list(tmp_path):
    marker = tmp_path / "marker"
    path = write_payload(tmp_path / "result.pkl", {"Y_pred": OpenMarker(marker), "Y_true": []})
    with pytest.raises(RefusedPickleError, match=refused(path)):
        load_predictions(path)
    words = tmp_path / "s3d_dict.npy"
    np.save(words, np.array(["pour", "milk"], dtype=object), allow_pickle=True)
    assert Sentence_Embedding._read_vocabulary(str(words), 4) == {"pour": 1, "milk": 2}
    assert load_npy_object_array(str(words)).tolist() == ["pour", "milk"]
    np.save(words, np.array(["pour", OpenMarker(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(RefusedPickleError, match=refused(words)):
        Sentence_Embedding._read_vocabulary(str(words), 4)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ checkpoints


def released_layout(path) -> str:
    """A released VideoCLIP/TempCLR checkpoint's layout: fp16 weights under ``model`` and ``args`` as a Namespace,
    with fairseq's history and meters (numpy scalars among their values)."""
    torch.save({"model": {"mmmodel.w": torch.ones(3, dtype=torch.float16)},
                "args": argparse.Namespace(arch="mmarch", task="mmtask", lr=[5e-5]),
                "optimizer_history": [{"criterion_name": "MMCriterion", "num_updates": 5,
                                       "lr_scheduler_state": {"best": np.float64(0.5)}}],
                "extra_state": {"train_iterator": {"epoch": 2, "iterations_in_epoch": 0},
                                "metrics": collections.OrderedDict(
                                    train=[(10, "loss", "AverageMeter", {"val": np.float32(1.0), "count": 2})])}},
               path)
    return str(path)


@pytest.mark.parametrize("zip_format", [True, False])
def test_released_checkpoint_layout_loads(tmp_path, zip_format):
    path = tmp_path / "checkpoint_best.pt"
    released_layout(path)
    if not zip_format:  # torch's pre-1.6 format
        torch.save(torch.load(path, weights_only=True), path, _use_new_zipfile_serialization=False)
    state = load_checkpoint_state(str(path))
    assert list(state) == ["mmmodel.w"] and state["mmmodel.w"].dtype == torch.float16
    assert checkpoint_progress(str(path)).num_updates == 5


@pytest.mark.parametrize("zip_format", [True, False])
def test_checkpoint_payload_is_refused(tmp_path, zip_format):
    marker = tmp_path / "marker"
    path = tmp_path / "checkpoint_best.pt"
    torch.save({"model": {"w": torch.ones(1)}, "args": OpenMarker(marker)}, path,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(RefusedPickleError, match=refused(path)):
        load_checkpoint_state(str(path))
    with pytest.raises(RefusedPickleError, match=refused(path)):
        checkpoint_progress(str(path))
    assert not marker.exists()


def test_local_predict_refuses_a_payload_checkpoint(tmp_path, small_demo):
    """``tempclr-predict`` (``locallaunch.py --jobtype local_predict``) on the demo's CrossTask release."""
    from test_predict import write_config
    from tempclr_cli import predict

    marker = tmp_path / "marker"
    folder = tmp_path / "ckpt"
    folder.mkdir()
    checkpoint = folder / "checkpoint_best.pt"
    torch.save({"model": {"mmmodel.w": torch.ones(1)}, "args": SystemMarker(marker)}, checkpoint)
    with pytest.raises(RefusedPickleError, match=refused(checkpoint, "posix.system")):
        predict.main([write_config(tmp_path, small_demo, checkpoint, test_videos=1)])
    assert not marker.exists() and not (folder / "eval").exists()


def test_resume_refuses_a_payload_checkpoint_before_fairseq_reads_it(tmp_path):
    marker = tmp_path / "marker"
    save_dir = tmp_path / "save"
    save_dir.mkdir()
    last = save_dir / "checkpoint_last.pt"
    torch.save({"model": {"w": torch.ones(1)}, "cfg": {"model": SystemMarker(marker)},
                "optimizer_history": [{"num_updates": 2}], "extra_state": {"train_iterator": {"epoch": 1}}}, last)
    try:
        with pytest.raises(RefusedPickleError, match=refused(last, "posix.system")):
            prepare_save_dir(str(save_dir))
    finally:
        release_save_dir(str(save_dir))
    assert not marker.exists()


def test_torch_refusal_of_a_torch_global_names_the_file(tmp_path):
    """A global torch's own loader refuses (here ``torch.load`` itself) comes back as tempclr's refusal."""
    path = tmp_path / "checkpoint_best.pt"
    with open(path, "wb") as f:
        torch.save({"model": {}}, f)
    import zipfile

    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    index = next(name for name in entries if name.endswith("data.pkl"))
    entries[index] = (b"\x80\x02ctorch\nload\nq\x00X\x03\x00\x00\x00/nonq\x01\x85q\x02Rq\x03.")
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    with pytest.raises(RefusedPickleError, match=refused(path, "torch.load")):
        load_checkpoint_state(str(path))


def test_checkpoint_allowlist_is_what_the_checkpoints_hold():
    """The non-data entries of the checkpoint allowlist: the Namespace of ``args`` / legacy ``cfg`` entries, the
    Counter torch admits anyway, and numpy's dtype classes (torch checks them when it rebuilds a numpy scalar)."""
    extra = sorted(name for name in CHECKPOINT_GLOBALS - DATA_GLOBALS if not name.startswith("numpy.dtypes."))
    assert extra == ["argparse.Namespace", "collections.Counter"]


def test_resume_from_a_named_restore_file_checks_it_too(tmp_path):
    marker = tmp_path / "marker"
    restore = tmp_path / "elsewhere.pt"
    torch.save({"model": {"w": torch.ones(1)}, "args": OpenMarker(marker)}, restore)
    try:
        with pytest.raises(RefusedPickleError, match=refused(restore)):
            prepare_save_dir(str(tmp_path / "save"), restore_file=str(restore))
    finally:
        release_save_dir(str(tmp_path / "save"))
    assert not marker.exists()


def test_fairseq_loads_must_stay_weights_only(monkeypatch):
    """fairseq's torch.load passes no weights_only: torch's default keeps it restricted unless this variable
    turns it off, which registering the plugin refuses."""
    from tempclr.utils.safe_pickle import require_weights_only_default

    require_weights_only_default()
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(RuntimeError, match="^TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set: fairseq would"):
        require_weights_only_default()
