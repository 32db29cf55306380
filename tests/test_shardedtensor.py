"""ShardedTensor: round trip, memory mapping, streamed writing and every corrupt-shard error."""
import os
import pickle

import numpy as np
import pytest

from tempclr.utils.shardedtensor import ShardedTensor, shard_paths, write_sharded


def _arrays(seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, 8)).astype(np.float16) for n in (5, 0, 3, 11)]


def test_round_trip_in_memory_and_on_disk(tmp_path):
    arrays = _arrays()
    tensor = ShardedTensor.from_list(arrays)
    assert len(tensor) == 4
    assert tensor.starts.dtype == np.int64
    assert tensor.lengths().tolist() == [5, 0, 3, 11]
    prefix = str(tmp_path / "train_0")
    tensor.save(prefix)
    for mmap_mode in ("r", None):
        loaded = ShardedTensor.load(prefix, mmap_mode=mmap_mode)
        assert len(loaded) == 4
        for i, array in enumerate(arrays):
            assert loaded[i].dtype == np.float16
            np.testing.assert_array_equal(loaded[i], array)
        np.testing.assert_array_equal(loaded[-1], arrays[-1])
    assert sorted(os.listdir(tmp_path)) == ["train_0_data.npy", "train_0_starts.npy"], "temp files left behind"


def test_load_memory_maps_data_once(tmp_path):
    prefix = str(tmp_path / "val_0")
    ShardedTensor.from_list(_arrays()).save(prefix)
    loaded = ShardedTensor.load(prefix)
    assert isinstance(loaded.data, np.memmap)
    item = loaded[2]
    assert np.shares_memory(item, loaded.data), "item is a copy, not a view into the memmap"
    base = item
    while base is not None and not isinstance(base, np.memmap):
        base = base.base
    assert base is loaded.data, "item does not reach the shard's memmap through .base"
    with pytest.raises(ValueError):
        item[0, 0] = 1.0  # read-only mapping


def test_write_sharded_streams_same_files_as_save(tmp_path):
    arrays = _arrays(1)
    ShardedTensor.from_list(arrays).save(str(tmp_path / "a"))
    write_sharded(str(tmp_path / "b"), [len(a) for a in arrays], (8,), np.float16, iter(arrays))
    for suffix in ("_data.npy", "_starts.npy"):
        assert (tmp_path / f"a{suffix}").read_bytes() == (tmp_path / f"b{suffix}").read_bytes()


def test_write_sharded_rejects_wrong_shape(tmp_path):
    arrays = _arrays(2)
    with pytest.raises(ValueError, match="array 2"):
        write_sharded(str(tmp_path / "c"), [5, 0, 4, 11], (8,), np.float16, iter(arrays))
    assert os.listdir(tmp_path) == [], "a failed write left files behind"


def test_from_list_rejects_mixed_dtypes():
    with pytest.raises(ValueError, match="array 1"):
        ShardedTensor.from_list([np.zeros((2, 3), np.float16), np.zeros((2, 3), np.float32)])
    with pytest.raises(IndexError):
        ShardedTensor.from_list([np.zeros((2, 3))])[1]


def _corrupt(tmp_path, starts: np.ndarray, n_rows: int = 6) -> str:
    prefix = str(tmp_path / "train_3")
    starts_path, data_path = shard_paths(prefix)
    np.save(data_path, np.zeros((n_rows, 4), np.float16))
    np.save(starts_path, starts)
    return prefix


@pytest.mark.parametrize("starts, message", [
    (np.array([1, 3, 6], np.int64), r"starts\[0\] must be 0"),
    (np.array([0, 4, 2, 6], np.int64), r"non-decreasing.*starts\[1\]=4 > starts\[2\]=2"),
    (np.array([0, 2, 5], np.int64), r"starts\[-1\]=5 does not equal the number of data rows 6"),
    (np.array([[0, 2], [4, 6]], np.int64), r"must be 1-D"),
    (np.array([0.0, 3.0, 6.0]), r"must be integers"),
])
def test_corrupt_starts_errors_name_file_and_fix(tmp_path, starts, message):
    prefix = _corrupt(tmp_path, starts)
    with pytest.raises(ValueError, match=message) as info:
        ShardedTensor.load(prefix)
    assert "train_3_starts.npy" in str(info.value)
    assert "shard_feature.py" in str(info.value)


def test_int32_starts_are_accepted_as_int64(tmp_path):
    loaded = ShardedTensor.load(_corrupt(tmp_path, np.array([0, 2, 6], np.int32)))
    assert loaded.starts.dtype == np.int64 and loaded.lengths().tolist() == [2, 4]


@pytest.mark.parametrize("missing", ["_starts.npy", "_data.npy"])
def test_missing_file_is_named(tmp_path, missing):
    prefix = str(tmp_path / "val_0")
    ShardedTensor.from_list(_arrays()).save(prefix)
    os.unlink(prefix + missing)
    with pytest.raises(FileNotFoundError, match="val_0" + missing.replace(".", r"\.")):
        ShardedTensor.load(prefix)


def test_pickle_reopens_memmap_instead_of_copying(tmp_path):
    prefix = str(tmp_path / "train_0")
    big = [np.ones((4000, 64), np.float16), np.zeros((10, 64), np.float16)]
    ShardedTensor.from_list(big).save(prefix)
    loaded = ShardedTensor.load(prefix)
    payload = pickle.dumps(loaded)
    assert len(payload) < 1000, f"pickled memmapped shard is {len(payload)} bytes: it copied the data"
    restored = pickle.loads(payload)
    assert isinstance(restored.data, np.memmap)
    np.testing.assert_array_equal(restored[0], big[0])
    in_memory = pickle.loads(pickle.dumps(ShardedTensor.from_list(big)))
    assert in_memory.lengths().tolist() == [4000, 10]
    np.testing.assert_array_equal(in_memory[1], big[1])
