"""The data faults that used to train or check clean: shifted shard offsets, reordered meta ids, captions ending
far past the video, a video twice in a split, token ids outside the vocabulary, YouCook2 ids without ``_<clip>``.
Each is reported by ``tempclr-check`` by file and row (all of them, not the first) and stops training before the
first update; a shard set without the sharding's record gets a warning naming what cannot be checked."""
import logging
import os
import pickle
import re
import sys

import numpy as np
import pytest

import tempclr
from conftest import ROOT, small_demo_config
from tempclr.datasets.integrity import CAPTION_END_TOLERANCE_S, DataIntegrityError
from tempclr.utils.shardedtensor import ShardedTensor
from tempclr_cli import check_data

SHARD = "feat/feat_how2_s3d_shard"
TEXT = "raw_caption_dedup.demo."


def meta(demo, split="train"):
    with open(demo / SHARD / f"{split}_meta.pkl", "rb") as f:
        return pickle.load(f)


def check_lines(config, capsys):
    """``(exit status, the [split] lines of tempclr-check's output, the whole output)``."""
    status = check_data.main([config])
    out = capsys.readouterr().out
    return status, [line for line in out.splitlines() if line.startswith("[")], out


def shift_interior_offsets(demo):
    path = demo / SHARD / "train_0_starts.npy"
    starts = np.load(path)
    starts[1:-1] += 5                                   # the ends kept: the shard still "fits" its data
    np.save(path, starts)
    return path


def rotate_meta_ids(demo):
    m = meta(demo)
    m[1] = m[1][1:] + m[1][:1]                          # every id of shard 1 now points at its neighbour's rows
    with open(demo / SHARD / "train_meta.pkl", "wb") as f:
        pickle.dump(m, f)
    return m[1]


def rewrite_text_item(demo, kind, shard, row, transform):
    prefix = demo / SHARD / f"{TEXT}train_{shard}.{kind}"
    tensor = ShardedTensor.load(str(prefix), mmap_mode=None)
    items = [tensor[i].copy() for i in range(len(tensor))]
    items[row] = transform(items[row])
    ShardedTensor.from_list(items).save(str(prefix))
    return f"{prefix}_data.npy"


def captions_past_the_end(demo):
    def late(se):
        se[-1, 1] += 1000.0                           # only the end: the caption still starts inside the video
        return se
    return rewrite_text_item(demo, "startends", 0, 5, late)


def token_beyond_vocab(demo):
    def big(ids):
        ids[0, 0] = 10 ** 6
        return ids
    return rewrite_text_item(demo, "caps_ids", 1, 2, big)


def duplicate_list_entry(demo):
    path = demo / "how2" / "how2_s3d_train.lst"
    first = path.read_text().splitlines()[0]
    with open(path, "a") as f:
        f.write(first + "\n")
    return path, first, len(path.read_text().splitlines())


def test_the_demo_passes_every_check(demo_copy, tmp_path, capsys):
    status, lines, out = check_lines(small_demo_config(tmp_path, demo_copy, tmp_path / "save"), capsys)
    assert status == 0 and lines == [] and out.strip().endswith("no problem found"), out


def test_shifted_offsets_are_reported_by_row(demo_copy, tmp_path, capsys):
    starts_path = shift_interior_offsets(demo_copy)
    status, lines, _ = check_lines(small_demo_config(tmp_path, demo_copy, tmp_path / "save"), capsys)
    ids = meta(demo_copy)[0]
    assert status == 1
    assert any(line.startswith(f"[train] {starts_path}, shard 0 row 0: video {ids[0]} has ") and
               "rows by the offsets but" in line for line in lines), lines
    # the videos in between keep their lengths but start 5 rows late: their first/last rows are not theirs
    for i in range(1, len(ids) - 1):
        assert any(f"shard 0 row {i}: the first or last feature row of video {ids[i]}" in line for line in lines)


def test_rotated_meta_ids_are_reported_for_every_row(demo_copy, tmp_path, capsys):
    rotated = rotate_meta_ids(demo_copy)
    status, lines, _ = check_lines(small_demo_config(tmp_path, demo_copy, tmp_path / "save"), capsys)
    data = demo_copy / SHARD / "train_1_data.npy"
    assert status == 1
    for i, video in enumerate(rotated):
        assert any(line.startswith(f"[train] {data}, shard 1 row {i}: the shard meta puts video {video} here but "
                                   "the sharding put") for line in lines), (i, lines)


def test_caption_ending_far_past_the_video(demo_copy, tmp_path, capsys):
    path = captions_past_the_end(demo_copy)
    status, lines, _ = check_lines(small_demo_config(tmp_path, demo_copy, tmp_path / "save"), capsys)
    video = meta(demo_copy)[0][5]
    assert status == 1 and len(lines) == 1, lines
    assert re.match(rf"\[train\] {re.escape(path)}, shard 0 row 5: video {video}: caption \d+ ends at [\d.]+ s but "
                    rf"the video has \d+ s of features \(tolerance {CAPTION_END_TOLERANCE_S:g} s\)", lines[0])


def test_a_video_twice_in_a_split(demo_copy, tmp_path, capsys):
    path, video, line_no = duplicate_list_entry(demo_copy)
    status, lines, _ = check_lines(small_demo_config(tmp_path, demo_copy, tmp_path / "save"), capsys)
    assert status == 1
    assert lines == [f"[train] {path}, line {line_no}: video {video} is listed again (first on line 1); a video "
                     "listed twice counts twice in training: remove the repeated line"]


def test_token_ids_beyond_the_vocabulary(demo_copy, tmp_path, capsys):
    path = token_beyond_vocab(demo_copy)
    status, lines, _ = check_lines(small_demo_config(tmp_path, demo_copy, tmp_path / "save"), capsys)
    video = meta(demo_copy)[1][2]
    assert status == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"[train] {path.replace('startends', 'caps_ids')}, shard 1 row 2: video {video}: "
                               "caption 0 holds token id 1000000, outside the vocabulary [0, 940)")


def test_a_shard_set_without_record_warns_what_is_not_checked(demo_copy, tmp_path, capsys):
    os.unlink(demo_copy / SHARD / "train_meta_record.npz")
    status, _, out = check_lines(small_demo_config(tmp_path, demo_copy, tmp_path / "save"), capsys)
    assert status == 0
    assert (f"[train] not checked: {demo_copy / SHARD / 'train_meta.pkl'}: no shard record "
            "(train_meta_record.npz) beside it, so the videos' row counts and first/last-row checksums cannot be "
            "checked") in out
    with pytest.warns(UserWarning, match="first/last-row checksums cannot be checked"):
        from tempclr.datasets.integrity import refuse_faulty_data
        from tempclr.utils.load_config import load_config
        config = load_config(config_file=small_demo_config(tmp_path, demo_copy, tmp_path / "save"), dryrun=True)
        refuse_faulty_data(config, ["train"], "cfg.yaml")


def test_check_lists_every_fault_at_once_and_training_refuses_before_the_first_update(
        demo_copy, tmp_path, capsys, monkeypatch, caplog):
    shift_interior_offsets(demo_copy)
    rotated = rotate_meta_ids(demo_copy)
    late = captions_past_the_end(demo_copy)
    big = token_beyond_vocab(demo_copy)
    list_path, twice, line_no = duplicate_list_entry(demo_copy)
    save_dir = tmp_path / "save"
    config = str(tmp_path / "two_updates.yaml")
    with open(config, "w") as f:
        f.write(f"includes: {small_demo_config(tmp_path, demo_copy, save_dir)}\n"
                "fairseq:\n  optimization:\n    max_update: 2\n")
    status, lines, out = check_lines(config, capsys)
    assert status == 1
    expected = [f"{demo_copy / SHARD / 'train_0_starts.npy'}, shard 0 row 0", f"{late}, shard 0 row 5",
                f"{big.replace('startends', 'caps_ids')}, shard 1 row 2", f"{list_path}, line {line_no}"] + \
               [f"{demo_copy / SHARD / 'train_1_data.npy'}, shard 1 row {i}" for i in range(len(rotated))]
    for where in expected:
        assert any(line.startswith(f"[train] {where}: ") for line in lines), (where, out)
    assert out.strip().endswith(f"{len(lines)} problem(s) found")

    from fairseq_cli import train as fairseq_train
    from tempclr_cli.localjob import LocalJob

    monkeypatch.chdir(ROOT)
    command = LocalJob(config, "local_single").command()
    tempclr.register_fairseq()
    monkeypatch.setattr(sys, "argv", command)
    caplog.set_level(logging.INFO)
    with pytest.raises(DataIntegrityError) as info:
        fairseq_train.cli_main()
    message = str(info.value)
    assert message.startswith("the train data has ") and f"run `tempclr-check {config}` for the full list" in message
    for where in expected[:4]:
        assert where in message, where
    assert twice in message
    assert "num_updates" not in caplog.text
    assert not [p for p in save_dir.rglob("*.pt")] if save_dir.exists() else True


def youcook_config(tmp_path, demo):
    path = tmp_path / "youcook.yaml"
    path.write_text(f"""includes: {os.path.join(ROOT, 'configs', 'demo', 'test_youcook_zs.yaml')}
dataset:
  bert_name: {demo}/bert
  test_path: {demo}/youcook/youcook_val.pkl
  trainval_annotation: {demo}/youcook/youcookii_annotations_trainval.json
  vfeat_dir: {demo}/youcook/features
eval:
  save_path: {tmp_path}/eval
""")
    return str(path)


def test_youcook_ids_without_clip_and_repeated_ids(demo_copy, tmp_path, capsys):
    from omegaconf import OmegaConf

    from tempclr.processors.dsprocessor import YoucookMetaProcessor

    pkl = demo_copy / "youcook" / "youcook_val.pkl"
    with open(pkl, "rb") as f:
        records = pickle.load(f)
    config = youcook_config(tmp_path, demo_copy)
    assert check_lines(config, capsys)[0] == 0
    video = records[0]["id"].rpartition("_")[0]
    records[3] = dict(records[3], id=video)              # a bare video id
    records[5] = dict(records[5], id="nounderscore")     # no clip at all
    records.append(dict(records[1]))                     # the same clip twice
    with open(pkl, "wb") as f:
        pickle.dump(records, f)
    status, lines, _ = check_lines(config, capsys)
    assert status == 1
    head = f"[test] {pkl}, record"
    assert [line for line in lines if line.startswith(head)] == [
        f"{head} 3: id {video!r} is the id of a video (in the annotation file or the feature folder), not "
        f"'<video>_<clip>': it would be read as clip {video.rpartition('_')[2]} of video "
        f"{video.rpartition('_')[0]!r}; append the clip index",
        f"{head} 5: id 'nounderscore' is not '<video>_<clip>' with an integer clip index; fix the id",
        f"{head} {len(records) - 1}: id {records[1]['id']!r} appears again (first as record 1); a clip listed "
        "twice counts twice: remove the repeat"]
    # evaluation refuses them too, naming the file and every faulty record
    dataset = OmegaConf.create({"split": "test", "test_path": str(pkl), "vfeat_dir": str(demo_copy / "youcook" /
                                "features"), "trainval_annotation": str(demo_copy / "youcook" /
                                                                        "youcookii_annotations_trainval.json"),
                                "use_annotation_text": True, "bert_name": str(demo_copy / "bert")})
    with pytest.raises(ValueError, match=rf"^{re.escape(str(pkl))} \(dataset.test_path\): 3 record id fault\(s\): "
                                         r"record 3: .*; record 5: .*; record \d+: "):
        YoucookMetaProcessor(dataset)


def test_caption_shards_too_large_to_scan_at_start_are_checked_item_by_item(demo_copy, tmp_path):
    """Beyond the start-up byte budget the caption values are left to the processors, which check each item."""
    from tempclr.datasets.integrity import scan_split
    from tempclr.tasks.task import Task
    from tempclr.utils.load_config import load_config

    big = token_beyond_vocab(demo_copy)
    captions_past_the_end(demo_copy)
    config = load_config(config_file=small_demo_config(tmp_path, demo_copy, tmp_path / "save"), dryrun=True)
    report = scan_split(config.dataset, "train", vocab_size=940, value_scan_bytes=1024)
    assert report.faults == [] and len(report.warnings) == 1
    assert "more than the 0 MiB read at start-up: caption times and token ids are checked as each item is read" \
        in report.warnings[0]
    dataset = Task.config_task(config).build_mmdataset(      # one video per item (the demo config groups them)
        "train", meta_processor="ShardedHow2MetaProcessor", video_processor="ShardedVideoProcessor",
        text_processor="ShardedTextProcessor", aligner="OverlappedAligner")
    position = {key[0]: n for n, (key, _) in enumerate(dataset.meta_processor[i] for i in range(len(dataset)))}
    ids = meta(demo_copy)
    with pytest.raises(ValueError, match=rf"^video {ids[1][2]}: caption 0 holds token id 1000000, outside the "
                                         rf"vocabulary \[0, 940\) of dataset.bert_name in "
                                         rf"{re.escape(big)}; the captions were tokenised with another tokenizer"):
        dataset[position[ids[1][2]]]
    with pytest.raises(ValueError, match=rf"^video {ids[0][5]}: caption \d+ ends at [\d.]+ s but the video has \d+ s "
                                         r"of features \(tolerance 2 s\)"):
        dataset[position[ids[0][5]]]
