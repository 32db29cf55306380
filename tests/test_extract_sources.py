"""Where ``tempclr-extract`` takes its videos from: WebDataset tar shards (as video2dataset writes them), csv lists;
and Ray stays optional: the local path imports no Ray."""
import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch

from synthetic_video import write_video
from tempclr.processors.extraction import ExtractError, extract_features, plan_videos
from tempclr.processors.models.s3dg import S3D

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAY_MODULES = {"tempclr.processors.ray_extraction", "tempclr.evaluators.ray_index"}


def noise(i, height, width):
    return np.random.default_rng(i).integers(0, 255, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def s3d():
    torch.manual_seed(0)
    return S3D(None).eval()


def write_shard(path, members: dict) -> str:
    """``members``: ``{name: bytes}`` in order, as a tar file (video2dataset's layout: <key>.mp4, <key>.json)."""
    with tarfile.open(path, "w") as shard:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            shard.addfile(info, io.BytesIO(data))
    return str(path)


def test_webdataset_shards_give_the_bytes_of_the_same_videos_as_files(tmp_path, s3d):
    loose, vdir = tmp_path / "loose", tmp_path / "shards"
    loose.mkdir(), vdir.mkdir()
    write_video(str(loose / "000000007.mp4"), 25, 32, 24, 60, frame=noise, lossless=False)
    write_video(str(loose / "000000008.mp4"), 30, 24, 32, 45, frame=noise, lossless=False)
    members = {}
    for key in ("000000007", "000000008"):
        members[f"{key}.mp4"] = (loose / f"{key}.mp4").read_bytes()
        members[f"{key}.json"] = json.dumps({"key": key, "status": "success"}).encode()
    members["000000009.mp4"] = b"\x00" * 100          # a corrupt sample: logged by its shard and member name
    shard = write_shard(vdir / "00000.tar", members)
    plan = plan_videos(str(vdir), str(tmp_path / "from_tar"))
    assert plan == [(f"{shard}::{key}.mp4", str(tmp_path / "from_tar" / f"{key}.npy"))
                    for key in ("000000007", "000000008", "000000009")]
    log = tmp_path / "errors.log"
    summary = extract_features(plan, s3d, batch_size=2, size=16, progress=False, error_log=str(log))
    assert list(summary.failed) == [f"{shard}::000000009.mp4"]
    assert log.read_text().split("\t")[1] == f"{shard}::000000009.mp4"
    extract_features(plan_videos(str(loose), str(tmp_path / "from_files")), s3d, batch_size=2, size=16,
                     progress=False)
    for key in ("000000007", "000000008"):
        assert (tmp_path / "from_tar" / f"{key}.npy").read_bytes() == \
            (tmp_path / "from_files" / f"{key}.npy").read_bytes()
    # one shard as --vdir: the same plan
    assert plan_videos(shard, str(tmp_path / "from_tar")) == plan


def test_a_csv_list_and_its_errors(tmp_path):
    (tmp_path / "v").mkdir()
    for name in ("x.mp4", "y.mp4"):
        (tmp_path / "v" / name).write_bytes(b"")
    listing = tmp_path / "list.csv"
    listing.write_text(f"video_path\n{tmp_path / 'v' / 'y.mp4'}\n{tmp_path / 'v' / 'x.mp4'}\n")
    assert plan_videos(str(listing), "f") == [(str(tmp_path / "v" / "y.mp4"), os.path.join("f", "y.npy")),
                                             (str(tmp_path / "v" / "x.mp4"), os.path.join("f", "x.npy"))]
    listing.write_text("path\nv/x.mp4\n")
    with pytest.raises(ExtractError, match=r"list\.csv: a csv list needs a header with a video_path column"):
        plan_videos(str(listing), "f")
    listing.write_text("video_path\nv/x.mp4\n\n ,\n")
    with pytest.raises(ExtractError, match=r"list\.csv, row 3: empty video_path"):
        plan_videos(str(listing), "f")
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar" * 100)
    with pytest.raises(ExtractError, match=r"bad\.tar: not a readable tar shard"):
        plan_videos(str(bad), "f")


def _modules_after(tmp_path, imports: str) -> tuple[int, list[str]]:
    """In a fresh process: run ``imports`` (Python), then a local extraction through the command line; the number of
    tempclr modules then loaded and the ``ray`` modules among ``sys.modules``."""
    vdir = tmp_path / "videos"
    vdir.mkdir()
    write_video(str(vdir / "clip.mp4"), 25, 32, 24, 25, lossless=False)
    torch.manual_seed(0)
    torch.save(S3D(None).state_dict(), tmp_path / "s3d.pth")
    script = imports + f"""
import sys
from tempclr_cli.extract import main
assert main(["--vdir", {str(vdir)!r}, "--fdir", {str(tmp_path / "f")!r}, "--s3d_checkpoint",
             {str(tmp_path / "s3d.pth")!r}, "--size", "16", "--device", "cpu", "--no_progress"]) == 0
print("RESULT", sum(m.split(".")[0] in ("tempclr", "tempclr_cli") for m in sys.modules),
      *sorted(m for m in sys.modules if m.split(".")[0] == "ray"))
"""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), TEMPCLR_NUMBA_WARMUP="0")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.load(tmp_path / "f" / "clip.npy").shape == (1, 512)
    words = [s for s in result.stdout.splitlines() if s.startswith("RESULT")][0].split()
    return int(words[1]), words[2:]


def test_a_local_extraction_never_imports_ray(tmp_path):
    """``tempclr-extract`` (local engine) and the search command's modules, in a fresh process: no ``ray`` module
    is loaded (Ray is the optional extra ``tempclr[ray]``, imported only by ``--engine ray``)."""
    loaded, ray_modules = _modules_after(tmp_path, "import tempclr_cli.search_videos, tempclr_cli.index_videos\n")
    assert loaded >= 5 and ray_modules == []


@pytest.mark.slow
def test_no_tempclr_module_but_the_ray_ones_imports_ray(tmp_path):
    """Every module of tempclr and tempclr_cli except :data:`RAY_MODULES` imported (what ``make demo`` and the
    default test tier can load), then a local extraction: still no ``ray`` module loaded."""
    imports = f"""
import importlib, os
root = {ROOT!r}
names = []
for package in ("tempclr", "tempclr_cli"):
    for folder, _, files in os.walk(os.path.join(root, package)):
        for name in sorted(files):
            if name.endswith(".py"):
                dotted = os.path.relpath(os.path.join(folder, name), root)[:-3].replace(os.sep, ".")
                names.append(dotted.removesuffix(".__init__"))
for name in sorted(names):
    if name not in {sorted(RAY_MODULES)!r}:
        importlib.import_module(name)
"""
    loaded, ray_modules = _modules_after(tmp_path, imports)
    assert loaded > 80 and ray_modules == []


def test_engine_flags_and_a_missing_ray_are_clear_errors(tmp_path, monkeypatch, capsys):
    from tempclr_cli.extract import main

    vdir = tmp_path / "videos"
    vdir.mkdir()
    (vdir / "a.mp4").write_bytes(b"")
    base = ["--vdir", str(vdir), "--fdir", str(tmp_path / "f"), "--no_progress"]
    for flags, message in ((["--address", "auto"], "need --engine ray"),
                           (["--num-model-actors", "2"], "need --engine ray"),
                           (["--engine", "ray", "--device", "cuda"], "--device is for --engine local"),
                           (["--engine", "spark"], "invalid choice: 'spark'")):
        with pytest.raises(SystemExit) as stop:
            main(base + flags)
        assert stop.value.code == 2 and message in capsys.readouterr().err
    # the local dry run lists the plan and writes nothing
    assert main(base + ["--dryrun"]) == 0
    assert "videos: 1 to extract, 0 skipped" in capsys.readouterr().out and not (tmp_path / "f").exists()
    # Ray absent (an import of it fails): --engine ray says how to install it, exit 1, nothing written
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)
    torch.manual_seed(0)
    torch.save(S3D(None).state_dict(), tmp_path / "s3d.pth")
    assert main(base + ["--engine", "ray", "--s3d_checkpoint", str(tmp_path / "s3d.pth"), "--dryrun"]) == 1
    assert "--engine ray needs Ray Data: pip install 'tempclr[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()
