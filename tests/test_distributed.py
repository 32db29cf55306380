"""Several ranks: the launcher's per-rank commands, real 2-process gloo training through ``local_small``, the SLURM
sbatch script (2 nodes x 4 GPUs, its rank arithmetic), and the same script run for real with 2 CPU ranks."""
import os
import re
import shlex
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ROOT, small_demo_config

from tempclr_cli import localjob
from tempclr_cli.launch import main as launch_main
from tempclr_cli.localjob import LocalJob, run_ranks
from tempclr_cli.slurm_rank import rank_command, rank_flags
from tempclr_cli.slurmjob import SlurmJob

ENV = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)


def no_cuda(monkeypatch):
    monkeypatch.setattr(localjob, "_cuda_available", lambda: False)


def flag(cmd, name):
    return cmd[cmd.index(name) + 1]


# ---------------------------------------------------------------- the launcher's commands (no processes)

def test_cpu_local_small_is_one_gloo_command_per_rank(in_repo, monkeypatch, capsys):
    no_cuda(monkeypatch)
    commands = LocalJob("configs/how2.yaml", "local_small", dryrun=True).commands()
    assert len(commands) == 2
    for rank, cmd in enumerate(commands):
        assert cmd[:2] == ["fairseq-train", "configs/how2.yaml"] and "--cpu" in cmd and "--fp16" not in cmd
        assert flag(cmd, "--distributed-world-size") == "2" and flag(cmd, "--distributed-rank") == str(rank)
        assert flag(cmd, "--distributed-backend") == "gloo" and "--distributed-no-spawn" in cmd
        assert flag(cmd, "--ddp-backend") == "no_c10d"  # the config's; fairseq's CPU-capable legacy wrapper
        assert cmd.count("--ddp-backend") == 1
    init = {flag(cmd, "--distributed-init-method") for cmd in commands}
    assert len(init) == 1 and re.fullmatch(r"tcp://127\.0\.0\.1:\d+", init.pop())
    # rank 0 and rank 1 differ only in the rank
    a, b = commands
    assert [x for x, y in zip(a, b) if x != y] == ["0"] and len(a) == len(b)


def test_cpu_ranks_replace_a_gpu_only_ddp_backend(tmp_path, monkeypatch, capsys):
    no_cuda(monkeypatch)
    config = tmp_path / "c.yaml"
    config.write_text(f"fairseq:\n  optimization:\n    ddp_backend: pytorch_ddp\n  checkpoint:\n"
                      f"    save_dir: {tmp_path / 's'}\n")
    commands = LocalJob(str(config), "local_small", dryrun=True, nproc=3).commands()
    assert len(commands) == 3 and all(flag(c, "--ddp-backend") == "legacy_ddp" for c in commands)
    assert "3 CPU ranks: --ddp-backend legacy_ddp (was pytorch_ddp, which needs GPUs)" in capsys.readouterr().err


def test_world_size_from_nproc_then_config_then_job_type(tmp_path, in_repo, monkeypatch):
    no_cuda(monkeypatch)
    assert LocalJob("configs/how2.yaml", "local_big", dryrun=True).world_size == 8
    assert len(LocalJob("configs/how2.yaml", "local_big", dryrun=True, nproc=3).commands()) == 3
    config = tmp_path / "c.yaml"
    config.write_text(f"includes: {ROOT}/configs/how2.yaml\nfairseq:\n  distributed_training:\n"
                      f"    distributed_world_size: 4\n")
    job = LocalJob(str(config), "local_small", dryrun=True)
    assert job.world_size == 4 and all(c.count("--distributed-world-size") == 1 for c in job.commands())
    assert LocalJob(str(config), "local_small", dryrun=True, nproc=2).world_size == 2
    with pytest.raises(ValueError, match=re.escape(
            f"fairseq.distributed_training.distributed_world_size: 4 in {config} asks for 4 ranks but --jobtype "
            "local_single runs one process; use --jobtype local_small (any number of ranks with --nproc)")):
        LocalJob(str(config), "local_single", dryrun=True)
    with pytest.raises(ValueError, match=re.escape("--nproc 2 asks for 2 ranks but --jobtype local_single")):
        LocalJob("configs/how2.yaml", "local_single", dryrun=True, nproc=2)
    with pytest.raises(ValueError, match=re.escape("--nproc 0: the number of ranks must be at least 1")):
        LocalJob("configs/how2.yaml", "local_small", dryrun=True, nproc=0)


def test_a_rank_key_in_the_config_is_an_error(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"fairseq:\n  distributed_training:\n    distributed_rank: 1\n  checkpoint:\n"
                      f"    save_dir: {tmp_path / 's'}\n")
    with pytest.raises(ValueError, match=re.escape(f"{config}: fairseq.distributed_training.distributed_rank is set "
                                                   "by the launcher for each rank; remove it from the config")):
        LocalJob(str(config), "local_small", dryrun=True)


def test_gpu_ranks_are_fairseqs_own_spawn_and_need_the_gpus(in_repo, monkeypatch):
    monkeypatch.setattr(localjob, "_cuda_available", lambda: True)
    monkeypatch.setattr(localjob, "_cuda_device_count", lambda: 4)
    (cmd,) = LocalJob("configs/how2.yaml", "local_small", dryrun=True, nproc=4).commands()
    assert cmd[-2:] == ["--distributed-world-size", "4"] and "--distributed-rank" not in cmd and "--cpu" not in cmd
    with pytest.raises(ValueError, match=re.escape(
            "local_big wants 8 ranks, one per GPU, but this machine has 4 CUDA device(s); pass --nproc 4 (or "
            "fewer), or run it on SLURM (--jobtype slurm_small / slurm_big)")):
        LocalJob("configs/how2.yaml", "local_big", dryrun=True).commands()


def test_dryrun_prints_every_rank_and_writes_nothing(tmp_path):
    save_dir = tmp_path / "save"
    config = tmp_path / "c.yaml"
    config.write_text(f"includes: {ROOT}/configs/demo/how2.yaml\nfairseq:\n  checkpoint:\n    save_dir: {save_dir}\n")
    out = subprocess.run([sys.executable, "locallaunch.py", str(config), "--jobtype", "local_small", "--nproc", "3",
                          "--dryrun"], cwd=ROOT, env=ENV, capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert [line.split(" fairseq-train")[0] for line in lines] == [f"launching (rank {r})" for r in range(3)]
    assert all(f"--distributed-rank {r} " in line for r, line in enumerate(lines))
    assert not save_dir.exists()


def test_a_failing_rank_stops_the_others(tmp_path):
    """Real processes: rank 1 fails at once, rank 0 would wait 60 s for it; the launcher returns rank 1's status
    and stops rank 0 (a rank blocked in a collective for a dead peer would hang the job)."""
    marker = tmp_path / "rank0_alive"
    waiting = [sys.executable, "-c", f"import time, pathlib; pathlib.Path({str(marker)!r}).touch(); time.sleep(60)"]
    failing = [sys.executable, "-c", "import time, sys; time.sleep(1.0); sys.exit(3)"]
    start = time.monotonic()
    assert run_ranks([waiting, failing], dict(os.environ), grace_s=5) == 3
    assert time.monotonic() - start < 30 and marker.exists()


# ---------------------------------------------------------------- SLURM

def slurm_config(tmp_path, extra=""):
    config = tmp_path / "big.yaml"
    config.write_text(f"includes: {ROOT}/configs/how2.yaml\nfairseq:\n  checkpoint:\n    save_dir: {tmp_path / 'save'}\n"
                      + extra)
    return str(config)


def test_sbatch_script_for_two_nodes_of_four_gpus(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    config = slurm_config(tmp_path, "slurm:\n  nodes: 2\n  gpus_per_node: 4\n  cpus_per_task: 10\n  time: '72:00:00'\n"
                                    "  partition: gpu\n  requeue: true\n  setup: ['module load cuda/12']\n")
    job = SlurmJob(config, "slurm_big", dryrun=True, overrides={"account": "proj"})
    script = job.script()
    log = f"{tmp_path}/save/slurm/big"
    head = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert head == ["#SBATCH --job-name=big", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4",
                    "#SBATCH --gpus-per-node=4", "#SBATCH --cpus-per-task=10", "#SBATCH --time=72:00:00",
                    "#SBATCH --partition=gpu", "#SBATCH --account=proj", f"#SBATCH --output={log}-%j.out",
                    f"#SBATCH --error={log}-%j.err", "#SBATCH --requeue", "#SBATCH --open-mode=append"]
    body = script.splitlines()
    assert body[0] == "#!/bin/bash" and "set -euo pipefail" in body and f"cd {ROOT}" in body
    assert 'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"' in body
    assert body.index("module load cuda/12") < len(body) - 1
    srun = shlex.split(body[-1])
    assert srun[:6] == ["srun", "--kill-on-bad-exit=1", "--distribution=block", sys.executable, "-m",
                        "tempclr_cli.slurm_rank"]
    task = srun[srun.index("--") + 1:]
    assert task[:2] == ["fairseq-train", config] and "--fp16" in task and "--cpu" not in task
    assert "--distributed-world-size" not in task  # each task adds its own rank flags

    # the rank arithmetic: srun's block distribution over 2 nodes x 4 tasks
    flags = []
    for procid in range(8):
        env = {"SLURM_NTASKS": "8", "SLURM_PROCID": str(procid), "SLURM_LOCALID": str(procid % 4),
               "SLURM_NODEID": str(procid // 4), "MASTER_ADDR": "node001", "MASTER_PORT": "21234"}
        flags.append(rank_flags(env, cpu=False))
    assert [flag(f, "--distributed-rank") for f in flags] == [str(r) for r in range(8)]
    assert [flag(f, "--device-id") for f in flags] == ["0", "1", "2", "3"] * 2
    assert {flag(f, "--distributed-world-size") for f in flags} == {"8"}
    assert {flag(f, "--distributed-init-method") for f in flags} == {"tcp://node001:21234"}
    assert all("--distributed-no-spawn" in f and "--distributed-backend" not in f for f in flags)


@pytest.mark.parametrize("section, name, value", [
    ("  partition: \"gpu\\n#SBATCH --wrap=id\"\n", "slurm.partition", "gpu\n#SBATCH --wrap=id"),
    ("  mem: \"64G\\rx\"\n", "slurm.mem", "64G\rx"),
    ("  setup: [\"module load cuda\", \"true\\nrm -rf ~\"]\n", "slurm.setup[1]", "true\nrm -rf ~")])
def test_slurm_values_with_a_newline_are_refused(tmp_path, section, name, value):
    config = slurm_config(tmp_path, "slurm:\n" + section)
    with pytest.raises(ValueError, match=re.escape(f"{config}: {name}: {value!r} holds a newline or another "
                                                   "control character")):
        SlurmJob(config, "slurm_small")
    with pytest.raises(ValueError, match=re.escape(f"--qos: 'a\\x00b' holds a newline")):
        SlurmJob(slurm_config(tmp_path), "slurm_small", overrides={"qos": "a\x00b"})
    with pytest.raises(ValueError, match=re.escape(f"{config}: slurm.job_name: value '../x' holds a path separator")):
        SlurmJob(slurm_config(tmp_path, "slurm:\n  job_name: ../x\n"), "slurm_small")
    assert not (tmp_path / "save").exists()


def test_slurm_values_are_shell_quoted_where_they_land(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = tmp_path / "big.yaml"
    config.write_text(f"includes: {ROOT}/configs/how2.yaml\nfairseq:\n  checkpoint:\n"
                      f"    save_dir: '{tmp_path}/my save $(id)'\n"
                      "slurm:\n  partition: 'gpu a;touch x'\n  account: \"o'brien\"\n  job_name: 'run $(id)'\n")
    job = SlurmJob(str(config), "slurm_small", dryrun=True)
    lines = job.script().splitlines()
    log = f"{tmp_path}/my save $(id)/slurm/run $(id)"
    for line in [line for line in lines if line.startswith("#SBATCH --")]:
        option, _, value = line[len("#SBATCH "):].partition("=")
        assert shlex.split(value) and len(shlex.split(value)) == 1, line
    sbatch = {line.partition("=")[0]: shlex.split(line.partition("=")[2])[0]
              for line in lines if line.startswith("#SBATCH --") and "=" in line}
    assert sbatch["#SBATCH --partition"] == "gpu a;touch x" and sbatch["#SBATCH --account"] == "o'brien"
    assert sbatch["#SBATCH --job-name"] == "run $(id)" and sbatch["#SBATCH --output"] == log + "-%j.out"
    assert shlex.split(lines[1])[5] == str(config)  # the comment names the config, quoted
    srun = shlex.split(lines[-1])
    assert srun[srun.index("--") + 1:][:2] == ["fairseq-train", str(config)]


def test_slurm_job_types_sizes_and_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = slurm_config(tmp_path)
    assert SlurmJob(config, "slurm_small", dryrun=True).world_size == 2
    assert SlurmJob(config, "slurm_big", dryrun=True).world_size == 8
    # configs/how2.yaml says slurm_config: big
    assert SlurmJob(config, "slurm", dryrun=True).settings["gpus_per_node"] == 8
    assert SlurmJob(config, "slurm_big", dryrun=True, overrides={"nodes": 3}).world_size == 24
    with pytest.raises(ValueError, match=re.escape(f"{config}: slurm.gpu_per_node: unknown key; did you mean "
                                                   "gpus_per_node?")):
        SlurmJob(slurm_config(tmp_path, "slurm:\n  gpu_per_node: 4\n"), "slurm_big", dryrun=True)
    with pytest.raises(ValueError, match=re.escape(
            f"{config}: slurm.gpus_per_node is 0 (CPU ranks): set slurm.ranks_per_node")):
        SlurmJob(slurm_config(tmp_path, "slurm:\n  gpus_per_node: 0\n"), "slurm_small", dryrun=True)
    with pytest.raises(ValueError, match=re.escape(
            "SLURM_NTASKS, SLURM_PROCID, SLURM_LOCALID, MASTER_ADDR, MASTER_PORT not set: tempclr_cli.slurm_rank "
            "runs inside a SLURM job step (srun)")):
        rank_command(["fairseq-train", "x.yaml"], {})
    with pytest.raises(ValueError, match=re.escape("SLURM_PROCID=8 is outside 0..7 (SLURM_NTASKS=8)")):
        rank_flags({"SLURM_NTASKS": "8", "SLURM_PROCID": "8", "SLURM_LOCALID": "0", "MASTER_ADDR": "a",
                    "MASTER_PORT": "1"}, cpu=False)


def test_slurm_dryrun_prints_the_script_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    config = slurm_config(tmp_path)
    assert launch_main([config, "--jobtype", "slurm_small", "--dryrun", "--partition", "debug"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {tmp_path}/save/slurm/big.sbatch (not written: --dryrun)\n#!/bin/bash\n")
    assert "#SBATCH --partition=debug\n" in out and "#SBATCH --ntasks-per-node=2\n" in out
    assert not (tmp_path / "save").exists()


def test_without_sbatch_the_script_is_written_with_the_command_to_submit(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # no sbatch on it
    config = slurm_config(tmp_path)
    assert launch_main([config, "--jobtype", "slurm_small"]) == 0
    path = tmp_path / "save" / "slurm" / "big.sbatch"
    assert path.read_text().startswith("#!/bin/bash\n")
    assert f"sbatch is not on this machine: submit the job on the cluster with\n    sbatch {path}" in \
        capsys.readouterr().out


# ---------------------------------------------------------------- real processes

def valid_losses(log):
    return [float(x) for x in re.findall(r"\| valid on 'valid' subset \| loss ([-\d.]+)", log)]


def overridden(tmp_path, base, name, text):
    """A config that includes ``base`` and overrides it with ``text``."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"includes: {base}\n{text}")
    return str(path)


def without_dropout(tmp_path, data_dir):
    """A copy of the demo's BERT folder whose config has every dropout probability at 0 (so that one process and
    two ranks draw no random masks)."""
    import json
    import shutil

    folder = tmp_path / "bert_no_dropout"
    shutil.copytree(os.path.join(data_dir, "bert"), folder)
    config = json.loads((folder / "config.json").read_text())
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        config[key] = 0.0
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def run(cmd, **kw):
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600, **kw)


@pytest.mark.slow
def test_two_cpu_ranks_train_like_one_process_with_the_same_global_batch(tmp_path, small_demo):
    """``local_small`` on a CPU machine: 2 real gloo ranks train the demo (8 groups per epoch, 4 updates of 2
    groups).  Only rank 0 logs and writes checkpoints; the validation loss after each epoch matches a single
    process that accumulates 2 groups per update (``update_freq: [2]``): the same retrieval groups, the same
    batches per update.  Without dropout (rank 1 would draw its masks from a fresh generator, the single process
    continues rank 0's) they differ only in the order of float32 sums: tolerance 1e-3 relative (measured: equal to the 4 logged
    decimals)."""
    two_dir, one_dir = tmp_path / "two", tmp_path / "one"
    epochs = (f"dataset:\n  bert_name: {without_dropout(tmp_path, small_demo)}\n"
              "fairseq:\n  optimization:\n    max_epoch: 2\n")
    two_config = overridden(tmp_path, small_demo_config(tmp_path, small_demo, two_dir), "two", epochs)
    two = run([sys.executable, "locallaunch.py", two_config, "--jobtype", "local_small"])
    log2 = two.stdout + two.stderr
    assert two.returncode == 0, log2[-4000:]
    one_config = overridden(tmp_path, small_demo_config(tmp_path, small_demo, one_dir), "one",
                            epochs + "    update_freq: [2]\n")
    one = run([sys.executable, "locallaunch.py", one_config, "--jobtype", "local_single"])
    log1 = one.stdout + one.stderr
    assert one.returncode == 0, log1[-4000:]
    assert "training on 2 devices" in log2 and "training on 1 devices" in log1
    # the same number of updates; the same validation losses
    updates = re.findall(r"num_updates (\d+)", log2)
    assert updates and updates == re.findall(r"num_updates (\d+)", log1)
    v2, v1 = valid_losses(log2), valid_losses(log1)
    assert len(v2) == len(v1) >= 2
    for a, b in zip(v2, v1):
        assert abs(a - b) <= 1e-3 * abs(b), (v2, v1)
    # rank 1 logs nothing at INFO level and writes no checkpoint: every line and file exists once
    assert log2.count("begin training epoch 1") == 1
    saved = re.findall(r"Saved checkpoint (\S+)", log2)
    assert saved and len(saved) == len(set(saved))
    runs = [d for d in os.listdir(two_dir) if d.startswith("run_")]
    assert runs == ["run_0"] and os.listdir(two_dir / "run_0")


FAKE_SRUN = textwrap.dedent("""\
    #!{python}
    # stands in for SLURM's srun on a machine without SLURM: one task per SLURM_NTASKS on this node
    import os, subprocess, sys
    args = sys.argv[1:]
    while args and args[0].startswith("--"):
        args.pop(0)
    ntasks = int(os.environ["SLURM_NTASKS"])
    procs = [subprocess.Popen(args, env=dict(os.environ, SLURM_PROCID=str(i), SLURM_LOCALID=str(i), SLURM_NODEID="0"))
             for i in range(ntasks)]
    sys.exit(max(p.wait() for p in procs))
    """)
FAKE_SCONTROL = "#!/bin/sh\necho 127.0.0.1\n"


@pytest.mark.slow
def test_the_sbatch_script_runs_two_cpu_ranks(tmp_path, small_demo):
    """The generated script, run by bash with stand-ins for ``srun`` and ``scontrol`` (SLURM is not on this
    machine): MASTER_ADDR from the node list, each task's rank from SLURM_PROCID, 2 real gloo ranks train."""
    save_dir = tmp_path / "save"
    config = overridden(tmp_path, small_demo_config(tmp_path, small_demo, save_dir), "cpu_slurm", (
        f"slurm:\n  nodes: 1\n  gpus_per_node: 0\n  ranks_per_node: 2\n  port: {localjob._free_port()}\n"
        "fairseq:\n  optimization:\n    max_update: 2\n"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in (("srun", FAKE_SRUN.format(python=sys.executable)), ("scontrol", FAKE_SCONTROL)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(stat.S_IRWXU)
    written = run([sys.executable, "locallaunch.py", config, "--jobtype", "slurm_small"])
    assert written.returncode == 0, written.stdout + written.stderr
    script = save_dir / "slurm" / "cpu_slurm.sbatch"
    env = dict(ENV, PATH=f"{bindir}:{ENV['PATH']}", SLURM_JOB_ID="4242", SLURM_JOB_NODELIST="node[001]",
               SLURM_NTASKS="2", SLURM_CPUS_PER_TASK="1")
    out = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "training on 2 devices" in log and "--distributed-rank 0" in log
    assert re.search(r"--distributed-init-method tcp://127\.0\.0\.1:\d+", log)
    assert "num_updates 2" in log and (save_dir / "checkpoint_last.pt").is_file()
