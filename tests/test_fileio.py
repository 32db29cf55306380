"""Atomic writes: a failed write leaves neither a partial file nor a temp file behind."""
import os

import pytest

from tempclr.utils.fileio import atomic_dir, atomic_path, write_json_atomic, write_pickle_atomic


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.json"
    write_json_atomic(str(target), {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text().replace(" ", "").replace("\n", "") == '{"a":1}'
    assert os.listdir(tmp_path) == ["out.json"]


def test_unserialisable_payload_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(str(tmp_path / "x.json"), {"f": object()})
    with pytest.raises(AttributeError, match=r"^Can't pickle local object "
                                             r"'test_unserialisable_payload_leaves_nothing\.<locals>\.<lambda>'$"):
        write_pickle_atomic(str(tmp_path / "x.pkl"), lambda: 0)
    assert os.listdir(tmp_path) == []


def test_atomic_dir_replaces_only_on_success(tmp_path):
    out = tmp_path / "release"
    with atomic_dir(str(out)) as tmp:
        open(os.path.join(tmp, "v1"), "w").write("1")
    with pytest.raises(ValueError):
        with atomic_dir(str(out)) as tmp:
            open(os.path.join(tmp, "v2"), "w").write("2")
            raise ValueError("generator failed")
    assert os.listdir(out) == ["v1"] and os.listdir(tmp_path) == ["release"]
    with atomic_dir(str(out)) as tmp:
        open(os.path.join(tmp, "v3"), "w").write("3")
    assert os.listdir(out) == ["v3"] and os.listdir(tmp_path) == ["release"]


def test_outputs_get_the_umask_permissions_not_the_temp_files(tmp_path):
    """Temp files are private (0600) while being written; what lands in place has the mode a plain open() would
    give (0644 under umask 022), so features and checkpoints on a shared cluster stay readable by the group."""
    old = os.umask(0o022)
    try:
        write_json_atomic(str(tmp_path / "a.json"), {"a": 1})
        write_pickle_atomic(str(tmp_path / "b.pkl"), [1])
        with atomic_dir(str(tmp_path / "release")) as folder:
            open(os.path.join(folder, "x"), "w").write("x")
        from tempclr.utils.shardedtensor import write_sharded
        import numpy as np
        write_sharded(str(tmp_path / "shard"), [2], (3,), np.float32, [np.zeros((2, 3), np.float32)])
        os.umask(0o027)
        write_json_atomic(str(tmp_path / "c.json"), {})
    finally:
        os.umask(old)
    modes = {name: os.stat(tmp_path / name).st_mode & 0o777
             for name in ("a.json", "b.pkl", "release", "shard_data.npy", "shard_starts.npy", "c.json")}
    assert modes == {"a.json": 0o644, "b.pkl": 0o644, "release": 0o755, "shard_data.npy": 0o644,
                     "shard_starts.npy": 0o644, "c.json": 0o640}


@pytest.mark.parametrize("target_exists", [True, False])
def test_a_symlinked_save_dir_lock_is_refused_and_its_target_untouched(tmp_path, target_exists):
    from tempclr.utils.save_dir_lock import LOCK_NAME, acquire_save_dir, holds_save_dir

    save_dir = tmp_path / "save"
    save_dir.mkdir()
    target = tmp_path / "victim.txt"
    if target_exists:
        target.write_text("keep me")
    (save_dir / LOCK_NAME).symlink_to(target)
    with pytest.raises(OSError, match=rf"^\[Errno \d+\] the lock file {save_dir / LOCK_NAME} of save_dir is a "
                                      rf"symbolic link \(to '{target}'\)"):
        acquire_save_dir(str(save_dir))
    assert not holds_save_dir(str(save_dir))
    assert (target.read_text() == "keep me") if target_exists else not target.exists()


def test_a_temp_file_replaced_by_a_symlink_is_not_written_through(tmp_path):
    from tempclr.utils.fileio import open_temp

    target = tmp_path / "victim.txt"
    target.write_text("keep me")
    with pytest.raises(OSError, match=r"the temp file was replaced by a symbolic link \(to '.*victim\.txt'\)"):
        with atomic_path(str(tmp_path / "out.json")) as tmp:
            os.remove(tmp)
            os.symlink(target, tmp)  # what another user of the folder could do between create and write
            with open_temp(tmp, "w", encoding="utf-8") as f:
                f.write("written")
    assert target.read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["victim.txt"]  # no output, and the link was removed
    write_json_atomic(str(tmp_path / "out.json"), {"a": 1})
    assert (tmp_path / "out.json").read_text() == '{\n  "a": 1\n}'
