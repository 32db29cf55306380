"""Crash safety of training: checkpoint files appear only complete, a rerun resumes from the newest complete
checkpoint, and one save_dir holds one run at a time.

The end-to-end tests kill the real fairseq-train process with SIGKILL: mid-epoch (from outside, through the
launcher), or in the middle of a checkpoint write or copy (``tests/crash_injector.py`` runs fairseq-train's main
and kills itself half-way through the ``torch.save`` / ``shutil.copyfile`` under the code under test).  Each rerun
is the launcher's normal command; its per-update losses are compared with an uninterrupted run's.
"""
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

import tempclr
from conftest import ROOT, small_demo_config
from tempclr.utils.checkpoint import (FAIRSEQ_CHECKPOINT, PARTIAL_CHECKPOINT, CheckpointError, checkpoint_problem,
                                      newer_checkpoint, prepare_save_dir)
from tempclr.utils.save_dir_lock import (LOCK_NAME, SaveDirInUseError, acquire_save_dir, holds_save_dir,
                                         release_save_dir)
from test_train import launch, train_losses

UPDATES = 24  # 3 epochs of 8 updates (8 groups of 2 videos, one group per batch)
ENV = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def crash_config(tmp_path, small_demo, save_dir, updates=UPDATES, name="run") -> str:
    base = small_demo_config(tmp_path, small_demo, save_dir)
    path = tmp_path / f"{name}_{updates}.yaml"
    path.write_text(f"includes: {base}\nfairseq:\n  optimization:\n    max_update: {updates}\n")
    return str(path)


def fairseq_args(config) -> list:
    """The fairseq-train arguments the launcher would run for ``config`` (its ``--dryrun`` writes nothing)."""
    dry = subprocess.run([sys.executable, "locallaunch.py", config, "--jobtype", "local_single", "--dryrun"],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    line = next(line for line in dry.stdout.splitlines() if line.startswith("launching fairseq-train "))
    return shlex.split(line)[2:]


def run_with_fault(config, fault, gate=None, wait=True):
    """fairseq-train for ``config`` under ``tests/crash_injector.py`` with ``TEMPCLR_TEST_FAULT=fault``."""
    env = dict(ENV, TEMPCLR_TEST_FAULT=fault, PATH=os.path.dirname(sys.executable) + os.pathsep + ENV["PATH"])
    if gate is not None:
        env["TEMPCLR_TEST_GATE"] = str(gate)
    command = [sys.executable, os.path.join("tests", "crash_injector.py")] + fairseq_args(config)
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def checkpoint_files(save_dir) -> dict:
    """``{name: problem or None}`` for every file of ``save_dir`` with a fairseq checkpoint name; a file that
    passes :func:`checkpoint_problem` must also load."""
    found = {}
    for name in sorted(os.listdir(save_dir)):
        if FAIRSEQ_CHECKPOINT.match(name):
            path = os.path.join(save_dir, name)
            problem = checkpoint_problem(path)
            if problem is None:
                torch.load(path, map_location="cpu", weights_only=True)
            found[name] = problem
    return found


def partial_files(save_dir) -> list:
    return sorted(name for name in os.listdir(save_dir) if PARTIAL_CHECKPOINT.match(name))


def assert_complete(save_dir, expected):
    files = checkpoint_files(save_dir)
    assert files == {name: None for name in expected}, files


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, small_demo):
    """Per-update losses of the same run trained without a crash."""
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    run = launch(crash_config(tmp_path, small_demo, tmp_path / "save"))
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    losses = train_losses(log)
    assert sorted(losses) == list(range(1, UPDATES + 1))
    return losses


def rerun_and_compare(config, uninterrupted, loaded: str, first_update: int) -> str:
    """Rerun ``config`` through the launcher: it must load ``loaded`` ("checkpoint_last.pt (epoch E @ U updates)")
    and log the uninterrupted run's losses from ``first_update`` on.  Returns the log."""
    rerun = launch(config)
    log = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, log[-3000:]
    assert re.search(r"Loaded checkpoint \S+/" + re.escape(loaded), log), log[-3000:]
    resumed = train_losses(log)
    assert sorted(resumed) == list(range(first_update, UPDATES + 1)), log[-3000:]
    assert resumed == {update: uninterrupted[update] for update in resumed}
    return log


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def child_pids(pid: int) -> list:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if _ppid(int(entry)) == pid:
                    children.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return children


@pytest.mark.slow
def test_sigkill_mid_epoch_then_the_rerun_continues_the_run(tmp_path, small_demo, uninterrupted):
    """kill -9 of fairseq-train in epoch 2: the rerun resumes from the end of epoch 1 and logs the uninterrupted
    run's losses; the dead run's lock (its file stays, naming the dead pid) does not hold up the rerun."""
    save_dir = tmp_path / "save"
    config = crash_config(tmp_path, small_demo, save_dir)
    launcher = subprocess.Popen([sys.executable, "locallaunch.py", config, "--jobtype", "local_single"], cwd=ROOT,
                                env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = []
    for line in launcher.stdout:
        log.append(line)
        if "num_updates=9," in line:  # the first update of epoch 2
            break
    (trainer,) = child_pids(launcher.pid)
    holder = json.loads((save_dir / LOCK_NAME).read_text())
    assert (holder["pid"], holder["host"], holder["program"]) == (trainer, socket.gethostname(), "fairseq-train")
    os.kill(trainer, signal.SIGKILL)
    log.append(launcher.communicate(timeout=120)[0])
    log = "".join(log)
    assert launcher.returncode != 0
    assert "checkpoint2.pt" not in log, "the kill came after epoch 2 ended: " + log[-2000:]
    assert_complete(save_dir, ["checkpoint1.pt", "checkpoint_best.pt", "checkpoint_last.pt"])
    assert json.loads((save_dir / LOCK_NAME).read_text())["pid"] == trainer  # left behind by the dead run

    log = rerun_and_compare(config, uninterrupted, "checkpoint_last.pt (epoch 2 @ 8 updates)", 9)
    assert "instead of" not in log  # checkpoint_last.pt was the newest complete checkpoint
    assert_complete(save_dir, ["checkpoint2.pt", "checkpoint3.pt", "checkpoint_best.pt", "checkpoint_last.pt"])
    assert partial_files(save_dir) == []


@pytest.mark.slow
def test_sigkill_while_writing_a_checkpoint_leaves_only_a_temp_file(tmp_path, small_demo, uninterrupted):
    """Killed half-way through writing checkpoint2.pt: no checkpoint name holds a partial file; the rerun removes
    the temp file and resumes from epoch 1's checkpoint_last.pt."""
    save_dir = tmp_path / "save"
    config = crash_config(tmp_path, small_demo, save_dir)
    crashed = run_with_fault(config, "save:checkpoint2.pt:1")
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout[-3000:] + crashed.stderr[-3000:]
    assert "Saving checkpoint to" in crashed.stdout and "checkpoint2.pt" in crashed.stdout
    assert_complete(save_dir, ["checkpoint1.pt", "checkpoint_best.pt", "checkpoint_last.pt"])
    (partial,) = partial_files(save_dir)

    log = rerun_and_compare(config, uninterrupted, "checkpoint_last.pt (epoch 2 @ 8 updates)", 9)
    assert f"removed {save_dir / partial}: part of a checkpoint that an earlier run was writing when it stopped" in log
    assert partial_files(save_dir) == []
    assert_complete(save_dir, ["checkpoint2.pt", "checkpoint3.pt", "checkpoint_best.pt", "checkpoint_last.pt"])


@pytest.mark.slow
def test_sigkill_while_copying_to_checkpoint_best_then_resume_from_checkpoint1(tmp_path, small_demo,
                                                                               uninterrupted):
    """Killed half-way through copying checkpoint1.pt to checkpoint_best.pt (fairseq's plain copy left a short
    checkpoint_best.pt): checkpoint_best.pt does not exist, and the rerun resumes from checkpoint1.pt although
    there is no checkpoint_last.pt yet."""
    save_dir = tmp_path / "save"
    config = crash_config(tmp_path, small_demo, save_dir)
    crashed = run_with_fault(config, "copy:checkpoint_best.pt:1")
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout[-3000:] + crashed.stderr[-3000:]
    assert_complete(save_dir, ["checkpoint1.pt"])
    assert len(partial_files(save_dir)) == 1

    log = rerun_and_compare(config, uninterrupted, "checkpoint_last.pt (epoch 2 @ 8 updates)", 9)
    assert (f"resuming from {save_dir}/checkpoint1.pt (epoch 2 @ 8 updates) instead of {save_dir}/"
            "checkpoint_last.pt (missing): the run stopped after writing the first and before copying it to "
            "checkpoint_last.pt; checkpoint_last.pt is now a copy of it") in log
    assert partial_files(save_dir) == []


@pytest.mark.slow
def test_crash_between_checkpoint2_and_its_copy_to_checkpoint_last(tmp_path, small_demo, uninterrupted):
    """Killed while copying checkpoint2.pt to checkpoint_last.pt: checkpoint_last.pt is still epoch 1's, complete;
    the rerun resumes from checkpoint2.pt, says so in one line naming both files, and continues at update 17."""
    save_dir = tmp_path / "save"
    config = crash_config(tmp_path, small_demo, save_dir)
    crashed = run_with_fault(config, "copy:checkpoint_last.pt:2")
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout[-3000:] + crashed.stderr[-3000:]
    files = checkpoint_files(save_dir)
    assert set(files) >= {"checkpoint1.pt", "checkpoint2.pt", "checkpoint_last.pt"} and not any(files.values())
    assert newer_checkpoint(str(save_dir))[0] == str(save_dir / "checkpoint2.pt")

    log = rerun_and_compare(config, uninterrupted, "checkpoint_last.pt (epoch 3 @ 16 updates)", 17)
    lines = [line for line in log.splitlines() if "resuming from" in line]
    assert len(lines) == 1 and lines[0].endswith(
        f"resuming from {save_dir}/checkpoint2.pt (epoch 3 @ 16 updates) instead of {save_dir}/checkpoint_last.pt "
        "(epoch 2 @ 8 updates): the run stopped after writing the first and before copying it to "
        "checkpoint_last.pt; checkpoint_last.pt is now a copy of it"), lines
    assert partial_files(save_dir) == []


def _in_use_message(save_dir, holder) -> str:
    return (f"SaveDirInUseError: save_dir {save_dir} is in use by another training run: pid {holder['pid']} on "
            f"host {holder['host']} ({holder['program']}, since {holder['since']}) holds its lock file "
            f"{save_dir}/{LOCK_NAME}. Wait until that run ends, or set fairseq.checkpoint.save_dir to another folder")


@pytest.mark.slow
def test_a_second_run_on_the_same_save_dir_fails_at_once(tmp_path, small_demo, uninterrupted):
    """Run A is paused in its first checkpoint write; run B on the same save_dir (through the launcher, and as a
    bare fairseq-train) fails with the holder's pid and host and writes nothing; A then finishes as if alone, and
    the lock is free again."""
    save_dir = tmp_path / "save"
    config = crash_config(tmp_path, small_demo, save_dir)
    gate = tmp_path / "gate"
    run_a = run_with_fault(config, "pause:checkpoint1.pt:1", gate=gate, wait=False)
    try:
        deadline = time.time() + 300
        while not os.path.exists(f"{gate}.paused"):
            assert run_a.poll() is None and time.time() < deadline, run_a.stdout.read()[-3000:]
            time.sleep(0.1)
        holder = json.loads((save_dir / LOCK_NAME).read_text())
        assert (holder["pid"], holder["program"]) == (run_a.pid, "fairseq-train")
        before = sorted(os.listdir(save_dir)), (save_dir / "config.yaml").read_bytes()

        longer = crash_config(tmp_path, small_demo, save_dir, updates=UPDATES + 2, name="b")
        run_b = launch(longer)
        assert run_b.returncode != 0
        assert run_b.stderr.strip().splitlines()[-1].endswith(_in_use_message(save_dir, holder)), run_b.stderr
        assert "launching" not in run_b.stdout  # it failed before starting fairseq-train
        bare_b = subprocess.run(["fairseq-train"] + fairseq_args(longer), cwd=ROOT, capture_output=True, text=True,
                                env=dict(ENV, PATH=os.path.dirname(sys.executable) + os.pathsep + ENV["PATH"]),
                                timeout=300)
        assert bare_b.returncode != 0
        assert _in_use_message(save_dir, holder) in bare_b.stderr, bare_b.stderr[-3000:]
        assert (sorted(os.listdir(save_dir)), (save_dir / "config.yaml").read_bytes()) == before
        assert run_a.poll() is None
    finally:
        gate.touch()
    log_a = run_a.communicate(timeout=600)[0]
    assert run_a.returncode == 0, log_a[-3000:]
    assert train_losses(log_a) == uninterrupted
    assert_complete(save_dir, ["checkpoint2.pt", "checkpoint3.pt", "checkpoint_best.pt", "checkpoint_last.pt"])

    assert acquire_save_dir(str(save_dir)) is True  # free once A has ended (reruns after a crash: the tests above)
    release_save_dir(str(save_dir))


# fast checks of the pieces, without training


def _fake_checkpoint(path, num_updates, epoch, iterations=0):
    torch.save({"model": {"w": torch.zeros(2)}, "optimizer_history": [{"num_updates": num_updates}],
                "extra_state": {"train_iterator": {"epoch": epoch, "iterations_in_epoch": iterations}}}, path)


def test_newest_is_judged_by_the_stored_progress_not_by_file_times(tmp_path):
    _fake_checkpoint(tmp_path / "checkpoint_last.pt", 4, 2)
    _fake_checkpoint(tmp_path / "checkpoint1.pt", 4, 2)
    _fake_checkpoint(tmp_path / "checkpoint_2_6.pt", 6, 2, 2)
    _fake_checkpoint(tmp_path / "checkpoint2.pt", 8, 3)
    os.utime(tmp_path / "checkpoint2.pt", (1_000_000, 1_000_000))  # the oldest file holds the latest state
    path, progress, last = newer_checkpoint(str(tmp_path))
    assert (path, str(progress), str(last)) == (str(tmp_path / "checkpoint2.pt"), "epoch 3 @ 8 updates",
                                                "epoch 2 @ 4 updates")
    _fake_checkpoint(tmp_path / "checkpoint_last.pt", 8, 3)
    assert newer_checkpoint(str(tmp_path)) is None  # as new as the newest: fairseq's own choice stands

    (tmp_path / "checkpoint3.pt").write_bytes((tmp_path / "checkpoint2.pt").read_bytes()[:1000])
    with pytest.raises(CheckpointError) as error:
        newer_checkpoint(str(tmp_path))
    assert str(error.value) == (
        f"cannot resume: checkpoint {tmp_path}/checkpoint3.pt is truncated or damaged (1000 bytes; its zip "
        "directory is unreadable); it may hold a later state of the run than checkpoint_last.pt, so the resume "
        f"does not guess. Move it out of {tmp_path} (or delete it) to resume from {tmp_path}/checkpoint_last.pt, "
        "or set fairseq.checkpoint.save_dir to a new folder")


def test_the_lock_names_its_holder_and_is_free_after_release(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, '.'); "
                               "from tempclr.utils.save_dir_lock import acquire_save_dir; "
                               f"acquire_save_dir({str(tmp_path)!r}); print('held', flush=True); time.sleep(600)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        info = json.loads((tmp_path / LOCK_NAME).read_text())
        with pytest.raises(SaveDirInUseError) as error:
            acquire_save_dir(str(tmp_path))
        assert "SaveDirInUseError: " + str(error.value) == _in_use_message(tmp_path, info)
        assert info["pid"] == holder.pid and not holds_save_dir(str(tmp_path))
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock
        holder.wait()
    assert acquire_save_dir(str(tmp_path)) is True and acquire_save_dir(str(tmp_path)) is False
    release_save_dir(str(tmp_path))
    assert not holds_save_dir(str(tmp_path))


@pytest.mark.slow
def test_fairseq_checkpoint_writes_and_copies_are_atomic(tmp_path):
    """fairseq.checkpoint_utils' own ``torch_persistent_save`` and ``PathManager.copy``, as save_checkpoint calls
    them, in a child killed half-way through: the target keeps its old content."""
    tempclr.register_fairseq()
    for fault, call in (("save:target.pt:1", "checkpoint_utils.torch_persistent_save({'new': 1}, TARGET)"),
                        ("copy:target.pt:1", "checkpoint_utils.PathManager.copy(SOURCE, TARGET, overwrite=True)")):
        target, source = tmp_path / "target.pt", tmp_path / "source.pt"
        torch.save({"old": 1}, target)
        torch.save({"new": 1, "pad": torch.zeros(10_000)}, source)
        script = ("import runpy, sys; sys.argv = ['x']; runpy.run_path('tests/crash_injector.py');"
                  "import tempclr, fairseq.checkpoint_utils as checkpoint_utils; tempclr.register_fairseq();"
                  f"TARGET, SOURCE = {str(target)!r}, {str(source)!r}; {call}")
        child = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=dict(ENV, TEMPCLR_TEST_FAULT=fault),
                               capture_output=True, text=True, timeout=300)
        assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
        assert checkpoint_problem(str(target)) is None, fault
        assert torch.load(target, weights_only=True) == {"old": 1}, fault
        assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")], fault
        for name in os.listdir(tmp_path):
            os.remove(tmp_path / name)


def _rank_worker(rank, world, save_dir, init_file, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = {"resume": prepare_save_dir(save_dir)}
    except Exception as error:  # what every rank raises is the point of the test
        result = {"error": f"{type(error).__name__}: {error}"}
    result["holds_lock"] = holds_save_dir(save_dir)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


def _run_ranks(tmp_path, save_dir, tag):
    import torch.multiprocessing as mp

    out = tmp_path / tag
    out.mkdir()
    mp.start_processes(_rank_worker, args=(2, str(save_dir), str(tmp_path / f"{tag}.init"), str(out)), nprocs=2,
                       start_method="spawn", join=True)
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)]


@pytest.mark.slow
def test_only_rank_0_changes_files_and_every_rank_hears_its_verdict(tmp_path):
    """Two real gloo ranks: rank 0 alone takes the lock and copies the newer checkpoint onto checkpoint_last.pt;
    both resume from the same file; when the save_dir is taken, both fail with rank 0's error (none hangs)."""
    save_dir = tmp_path / "save"
    save_dir.mkdir()
    _fake_checkpoint(save_dir / "checkpoint_last.pt", 4, 2)
    _fake_checkpoint(save_dir / "checkpoint2.pt", 8, 3)
    results = _run_ranks(tmp_path, save_dir, "resume")
    last = str(save_dir / "checkpoint_last.pt")
    assert results == [{"resume": last, "holds_lock": True}, {"resume": last, "holds_lock": False}]
    assert (save_dir / "checkpoint_last.pt").read_bytes() == (save_dir / "checkpoint2.pt").read_bytes()

    acquire_save_dir(str(save_dir))  # this test process is now "another run"
    try:
        results = _run_ranks(tmp_path, save_dir, "taken")
    finally:
        release_save_dir(str(save_dir))
    info = json.loads((save_dir / LOCK_NAME).read_text())
    assert results == [{"error": _in_use_message(save_dir, info), "holds_lock": False}] * 2


def test_a_dead_holder_whose_forked_children_still_hold_the_lock_is_named_as_ended(tmp_path):
    """A killed run's forked data loader workers share its lock until they exit: the error says the recorded
    holder has ended; once the children are gone, the lock is free."""
    script = ("import os, sys, time; sys.path.insert(0, '.'); "
              "from tempclr.utils.save_dir_lock import acquire_save_dir; "
              f"acquire_save_dir({str(tmp_path)!r}); child = os.fork(); "
              "print(child, flush=True) if child else None; time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    child = int(holder.stdout.readline())
    try:
        holder.kill()
        holder.wait()
        info = json.loads((tmp_path / LOCK_NAME).read_text())
        with pytest.raises(SaveDirInUseError) as error:
            acquire_save_dir(str(tmp_path))
        assert str(error.value) == (
            f"save_dir {tmp_path} is in use by another training run: pid {holder.pid} on host {info['host']} "
            f"({info['program']}, since {info['since']}) (that process has ended; processes it forked, such as data "
            f"loader workers, still hold the lock and exit within seconds) holds its lock file {tmp_path}/{LOCK_NAME}. "
            "Wait until that run ends, or set fairseq.checkpoint.save_dir to another folder")
    finally:
        os.kill(child, signal.SIGKILL)
    deadline = time.time() + 60
    while True:  # the kernel drops the lock as the killed child exits
        try:
            assert acquire_save_dir(str(tmp_path)) is True
            break
        except SaveDirInUseError:
            assert time.time() < deadline
            time.sleep(0.05)
    release_save_dir(str(tmp_path))
