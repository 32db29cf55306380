"""CrossTask release readers and split: well-formed files, malformed files (error names file and line), the
local-RNG split against the original global-seed formulation, and the availability filter."""
from __future__ import annotations

import os

import numpy as np
import pytest

from tempclr.processors.crosstask_release import (
    CrossTaskFormatError, filter_available, get_available_vids, get_vids, random_split, read_annotation,
    read_assignment, read_step_sequence, read_task_info, split_vids)

PRIMARY = ("16815\nMake Jello Shots\nhttp://www.wikihow.com/Make-Jello-Shots\n3\n"
           "pour water,stir mixture,pour mixture into cup\n\n"
           "23521\nMake Pancakes\nhttp://www.wikihow.com/Make-Pancakes\n2\n"
           "add flour,flip pancake\n\n")
RELATED = "99999\nRelated Task\nhttp://example.org/related\n1\ndo something\n\n"


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_read_task_info_well_formed(tmp_path):
    info = read_task_info(_write(tmp_path / "tasks_primary.txt", PRIMARY))
    assert list(info["title"]) == ["16815", "23521"]
    assert info["title"]["16815"] == "Make Jello Shots"
    assert info["url"]["23521"] == "http://www.wikihow.com/Make-Pancakes"
    assert info["n_steps"] == {"16815": 3, "23521": 2}
    assert info["steps"]["16815"] == ["pour water", "stir mixture", "pour mixture into cup"]


def test_read_task_info_last_block_without_blank_line(tmp_path):
    info = read_task_info(_write(tmp_path / "t.txt", PRIMARY.rstrip("\n") + "\n"))
    assert info["steps"]["23521"] == ["add flour", "flip pancake"]
    info = read_task_info(_write(tmp_path / "t2.txt", PRIMARY + "\n\n"))
    assert list(info["n_steps"]) == ["16815", "23521"]


@pytest.mark.parametrize("text, line, message", [
    (PRIMARY.replace("\n3\n", "\nthree\n"), 4, "positive integer"),
    (PRIMARY.replace("\n3\n", "\n4\n"), 5, "declares 4 steps"),
    (PRIMARY.replace("\n2\n", "\n1\n"), 11, "declares 1 steps"),
    (PRIMARY.replace("cup\n\n", "cup\nextra\n\n"), 6, "expected a blank line"),
    (PRIMARY.replace("cup\n\n", "cup\n\n\n"), 7, "expected a task id"),
    (PRIMARY + PRIMARY, 13, "appears twice"),
    (PRIMARY + "777\nTruncated\n", 14, "ends after 2 lines"),
])
def test_read_task_info_malformed(tmp_path, text, line, message):
    path = _write(tmp_path / "tasks.txt", text)
    with pytest.raises(CrossTaskFormatError, match=message) as err:
        read_task_info(path)
    assert str(err.value).startswith(f"{path}:{line}:"), str(err.value)


def test_get_vids_groups_by_task(tmp_path):
    csv = _write(tmp_path / "videos.csv", "1,a,u1\n2,b,u2\n1,c,u3\n\n")
    assert get_vids(csv) == {"1": ["a", "c"], "2": ["b"]}


def test_a_video_listed_twice_for_one_task_is_refused(tmp_path):
    csv = _write(tmp_path / "videos.csv", "1,a,u1\n2,a,u1\n1,b,u2\n1,a,u1\n")   # a in tasks 1 and 2 is fine
    with pytest.raises(CrossTaskFormatError) as err:
        get_vids(csv)
    assert str(err.value) == (f"{csv}:4: task 1 video a is listed again (first on line 1); a video listed twice "
                              "counts twice: remove the repeated line")


@pytest.mark.parametrize("line", ["1,a", "1,a,u,extra", ",a,u"])
def test_get_vids_malformed(tmp_path, line):
    csv = _write(tmp_path / "videos.csv", "1,a,u1\n" + line + "\n")
    with pytest.raises(CrossTaskFormatError) as err:
        get_vids(csv)
    assert str(err.value).startswith(f"{csv}:2:"), str(err.value)


def test_read_assignment_and_sequence(tmp_path):
    path = _write(tmp_path / "a.csv", "2,1.5,3.2\n1,4.0,5.0\n3,8.7,20.0\n")
    Y = read_assignment(10, 3, path)
    assert Y.dtype == np.uint8 and Y.shape == (10, 3)
    expected = np.zeros((10, 3), np.uint8)
    expected[1:4, 1] = 1  # floor(1.5)=1 .. ceil(3.2)=4
    expected[4:5, 0] = 1
    expected[8:10, 2] = 1  # clipped at T=10
    assert np.array_equal(Y, expected), Y
    assert read_step_sequence(path) == [1, 0, 2]
    assert read_annotation(path)[0] == (1, 1.5, 3.2)


@pytest.mark.parametrize("line, message", [
    ("2,1.0", "expected 3 comma-separated fields"),
    ("x,1.0,2.0", "not an integer"),
    ("0,1.0,2.0", "outside 1..3"),
    ("4,1.0,2.0", "outside 1..3"),
    ("1,abc,2.0", "not numbers"),
    ("1,5.0,2.0", "before start"),
    ("1,-1.0,2.0", "start >= 0"),
    ("1,nan,2.0", "finite"),
])
def test_read_assignment_malformed(tmp_path, line, message):
    path = _write(tmp_path / "a.csv", "1,0.0,1.0\n" + line + "\n")
    with pytest.raises(CrossTaskFormatError, match=message) as err:
        read_assignment(10, 3, path)
    assert str(err.value).startswith(f"{path}:2:"), str(err.value)


def _global_seed_split(task_vids, test_tasks, n_train):
    """The original formulation: np.random.seed(0), then np.random.choice per task."""
    saved = np.random.get_state()
    try:
        np.random.seed(0)
        train, test = {}, {}
        for task, vids in task_vids.items():
            if task in test_tasks and len(vids) > n_train:
                train[task] = np.random.choice(vids, n_train, replace=False).tolist()
                test[task] = [vid for vid in vids if vid not in train[task]]
            else:
                train[task] = vids
        return train, test
    finally:
        np.random.set_state(saved)


def test_random_split_equals_global_seed_version():
    rng = np.random.default_rng(0)
    task_vids = {f"task{i}": [f"v{i}_{j}" for j in range(int(rng.integers(5, 80)))] for i in range(12)}
    test_tasks = {f"task{i}" for i in range(0, 12, 2)}
    expected = _global_seed_split(task_vids, test_tasks, 30)
    np.random.seed(123)  # the global state must not matter
    got = random_split(task_vids, test_tasks, 30, seed=0)
    assert got == expected
    assert any(len(v) > 30 for t, v in task_vids.items() if t in test_tasks)  # some task was really split
    for task, test in got[1].items():
        assert sorted(test + got[0][task]) == sorted(task_vids[task])
    assert random_split(task_vids, test_tasks, 30, seed=1) != expected


def _release(tmp_path):
    """A small release: task 16815 has 3 available videos (v1, v3, v5), v2 lacks its feature, v4 its
    annotation; 23521 has one available video; related task 99999 has no annotations; v5 is in videos_val."""
    feat, ann = tmp_path / "features", tmp_path / "annotations"
    for vid in ["v1", "v3", "v4", "v5", "w1", "r1"]:
        _write(feat / f"{vid}.npy", "")
    for task, vid in [("16815", "v1"), ("16815", "v2"), ("16815", "v3"), ("16815", "v5"), ("23521", "w1")]:
        _write(ann / f"{task}_{vid}.csv", "1,0,1\n")
    videos = _write(tmp_path / "videos.csv", "23521,w0,u\n16815,v1,u\n16815,v2,u\n23521,w1,u\n16815,v3,u\n"
                    "16815,v4,u\n99999,r1,u\n16815,v5,u\n")
    val = _write(tmp_path / "videos_val.csv", "16815,v5,u\n")
    return videos, val, str(feat), str(ann)


def test_availability_filter(tmp_path):
    videos, _, feat, ann = _release(tmp_path)
    expected = {"16815": ["v1", "v3", "v5"], "23521": ["w1"]}
    filtered = filter_available(get_vids(videos), feat, ann)
    assert filtered == expected
    assert list(filtered) == ["23521", "16815"]  # input order (23521 appears first in the csv)
    available = get_available_vids(videos, feat, ann)
    assert available == expected
    assert list(available) == ["16815", "23521"]  # order of first available video, as MMPT reads it


def test_split_vids_end_to_end(tmp_path):
    videos, val, feat, ann = _release(tmp_path)
    primary = _write(tmp_path / "tasks_primary.txt", PRIMARY)
    related = _write(tmp_path / "tasks_related.txt", RELATED)
    splits = split_vids(videos, val, primary, related, feat, ann, n_train=1, seed=0)
    assert splits["valid"] is splits["test"]
    train, test = splits["train"], splits["test"]
    assert set(train) == {"16815", "23521"} and set(test) == {"16815"}
    assert sorted(train["16815"] + test["16815"]) == ["v1", "v3"]  # v5 removed as a validation video
    assert len(train["16815"]) == 1 and train["23521"] == ["w1"]
    # the split is drawn over the listed videos (v5 is a validation video), then the unavailable ones are skipped
    listed_train, listed_test = _global_seed_split({"23521": ["w0", "w1"], "16815": ["v1", "v2", "v3", "v4"]},
                                                   {"16815", "23521"}, 1)
    available = {"v1", "v3", "w1"}
    assert train == {t: [v for v in vids if v in available] for t, vids in listed_train.items()
                     if any(v in available for v in vids)}
    assert test == {t: [v for v in vids if v in available] for t, vids in listed_test.items()
                    if any(v in available for v in vids)}
    assert os.path.isdir(feat)


def test_a_missing_file_never_changes_the_split(tmp_path):
    """Deleting one test video's annotation removes that video from the test set and changes nothing else (the
    original re-drew the task's split, and through the shared RNG every later task's); the skip is reported."""
    feat, ann = tmp_path / "features", tmp_path / "annotations"
    rows = []
    for task in ("16815", "23521"):
        for k in range(8):
            vid = f"{task}_{k}"
            _write(feat / f"{vid}.npy", "")
            _write(ann / f"{task}_{vid}.csv", "1,0,1\n")
            rows.append(f"{task},{vid},u\n")
    videos = _write(tmp_path / "videos.csv", "".join(rows))
    val = _write(tmp_path / "videos_val.csv", "")
    primary = _write(tmp_path / "tasks_primary.txt", PRIMARY)
    related = _write(tmp_path / "tasks_related.txt", RELATED)
    messages = []
    before = split_vids(videos, val, primary, related, str(feat), str(ann), n_train=3, report=messages.append)
    assert messages == []
    gone = before["test"]["16815"][0]
    os.remove(ann / f"16815_{gone}.csv")
    after = split_vids(videos, val, primary, related, str(feat), str(ann), n_train=3, report=messages.append)
    assert after["train"] == before["train"]
    assert after["test"] == {"16815": before["test"]["16815"][1:], "23521": before["test"]["23521"]}
    assert messages == [f"[tempclr] CrossTask test split: 1 of 10 listed videos skipped, 1 files missing "
                        f"({ann / f'16815_{gone}.csv'}); the other videos keep their split"]
