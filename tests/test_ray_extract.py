"""``tempclr-extract --engine ray`` on a real Ray cluster started here (a head and one more worker node,
``ray.cluster_utils.Cluster``): the same bytes as the local engine on mp4 files and WebDataset shards, a killed S3D
actor process survived, resume, corrupt videos logged by name.

Slow tier (a Ray cluster costs seconds to start; the tests share one).  Ray is an optional extra that ``make
test-slow`` installs: without it these tests fail (they do not skip), so a slow-tier run never looks green without
having exercised Ray.
"""
import os
import signal
import tarfile
import threading
import time

import numpy as np
import pytest
import torch

from synthetic_video import write_video
from tempclr.processors.extraction import extract_features, plan_videos
from tempclr.processors.models.s3dg import S3D, load_s3d

pytestmark = pytest.mark.slow


def noise(i, height, width):
    return np.random.default_rng(i).integers(0, 255, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def cluster():
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError as error:
        pytest.fail(f"the Ray tests need Ray: pip install -e '.[ray]' (make test-slow installs it): {error}")
    # small object stores: the tests move kilobytes, and a container's /dev/shm may be small
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "object_store_memory": 150 * 2**20})
    cluster.add_node(num_cpus=2, object_store_memory=150 * 2**20)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="WARNING")
    try:
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def s3d_checkpoint(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("s3d") / "s3d_random.pth"
    torch.save(S3D(None).state_dict(), path)
    return str(path)


def write_shard(path, videos: dict) -> None:
    """A WebDataset shard as video2dataset writes it: ``<key>.mp4`` and ``<key>.json`` per sample."""
    with tarfile.open(path, "w") as shard:
        for key, video in videos.items():
            shard.add(video, arcname=f"{key}.mp4")
            meta = path.parent / f"{key}.json"
            meta.write_text('{"url": "https://example.com/%s", "key": "%s", "status": "success"}' % (key, key))
            shard.add(meta, arcname=f"{key}.json")
            meta.unlink()


def test_ray_and_local_give_the_same_bytes_on_files_and_shards(tmp_path, cluster, s3d_checkpoint, capsys):
    from tempclr_cli.extract import main

    vdir, loose = tmp_path / "videos", tmp_path / "loose"
    vdir.mkdir(), loose.mkdir()
    write_video(str(vdir / "a.mp4"), 25, 40, 30, 25 * 3, frame=noise, lossless=False)
    write_video(str(vdir / "b.mp4"), 30, 33, 47, 40, frame=noise, lossless=False)
    (vdir / "corrupt.mp4").write_bytes(b"\x00" * 64 + b"not a video" * 40)
    for key, seconds in (("000000000", 2), ("000000001", 4)):
        write_video(str(loose / f"{key}.mp4"), 25, 32, 24, 25 * seconds, frame=noise, lossless=False)
    write_shard(vdir / "shard-00000.tar", {k: loose / f"{k}.mp4" for k in ("000000000", "000000001")})
    names = ["a", "b", "000000000", "000000001"]
    plan = plan_videos(str(vdir), str(tmp_path / "local"))
    local = extract_features(plan, load_s3d(s3d_checkpoint), batch_size=2, num_decoding_thread=2, size=16,
                             progress=False)
    assert sorted(os.path.basename(f)[:-4] for v, f in plan if v in local.done) == sorted(names)
    fdir = tmp_path / "ray"
    flags = ["--vdir", str(vdir), "--fdir", str(fdir), "--s3d_checkpoint", s3d_checkpoint, "--size", "16",
             "--batch_size", "2", "--engine", "ray", "--address", cluster.address, "--num-model-actors", "2",
             "--no_progress"]
    assert main(flags + ["--dryrun"]) == 0
    out = capsys.readouterr().out
    assert "videos: 5 to extract, 0 skipped" in out and "S3D: 2 actor(s), each 0 GPU and 1 CPU" in out
    assert "3 CPUs, 0 GPUs, 2 node(s)" in out and not fdir.exists()
    assert main(flags) == 0
    out, err = capsys.readouterr()
    assert "done 4, skipped 0 (features exist), failed 1" in out
    assert f"failed: {vdir / 'corrupt.mp4'}: cannot open" in err
    log = (fdir / "extract_errors.log").read_text().splitlines()
    assert [line.split("\t")[1] for line in log] == [str(vdir / "corrupt.mp4")]
    for name in names:
        assert (fdir / f"{name}.npy").read_bytes() == (tmp_path / "local" / f"{name}.npy").read_bytes(), name
    assert sorted(os.listdir(fdir)) == sorted([f"{n}.npy" for n in names] + ["extract_errors.log"])
    # a rerun skips the finished videos (their files untouched) and retries only the corrupt one
    stamps = {n: os.stat(fdir / f"{n}.npy").st_mtime_ns for n in names}
    assert main(flags) == 0
    assert "done 0, skipped 4 (features exist), failed 1" in capsys.readouterr().out
    assert stamps == {n: os.stat(fdir / f"{n}.npy").st_mtime_ns for n in names}
    # more GPUs than the cluster has: refused before anything runs
    assert main(flags + ["--gpus-per-actor", "1"]) == 1
    assert "needs 2 GPUs; the cluster has 0" in capsys.readouterr().err


def _s3d_actor_pids() -> list[int]:
    import ray

    pids = []
    for actor in ray._private.state.actors().values():
        if "S3DActor" in actor.get("ActorClassName", "") and actor.get("State") == "ALIVE" and actor.get("Pid"):
            pids.append(int(actor["Pid"]))
    return pids


def test_a_killed_s3d_actor_process_is_replaced_and_the_job_finishes(tmp_path, cluster, s3d_checkpoint):
    from tempclr.processors.ray_extraction import ray_extract_features

    vdir = tmp_path / "videos"
    vdir.mkdir()
    for i in range(6):
        write_video(str(vdir / f"v{i}.mp4"), 25, 32, 24, 25 * 12, frame=noise, lossless=False)
    plan = plan_videos(str(vdir), str(tmp_path / "ray"))
    killed, seen = [], []

    def kill_once_running() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            pids = _s3d_actor_pids()
            outputs = [f for _, f in plan if os.path.exists(f)]
            if pids and outputs:            # S3D has given at least one video: kill its process mid-run
                seen.extend(outputs)
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_once_running, daemon=True)
    killer.start()
    summary = ray_extract_features(plan, s3d_checkpoint, batch_size=2, size=32, progress=False)
    killer.join()
    assert killed, "the S3D actor was never seen running"
    assert len(seen) < len(plan), "the run had finished before the kill: nothing was tested"
    assert not summary.failed and len(summary.done) == len(plan)
    assert sorted(summary.done) == sorted(v for v, _ in plan)       # each video once
    local = extract_features(plan_videos(str(vdir), str(tmp_path / "local")), load_s3d(s3d_checkpoint),
                             batch_size=2, size=32, progress=False)
    assert len(local.done) == len(plan)
    for i in range(6):
        assert (tmp_path / "ray" / f"v{i}.npy").read_bytes() == (tmp_path / "local" / f"v{i}.npy").read_bytes()
    assert sorted(os.listdir(tmp_path / "ray")) == [f"v{i}.npy" for i in range(6)]     # no temp file left


def test_ray_index_writes_the_local_shards_and_index(tmp_path, cluster, capsys):
    """``tempclr-index --engine ray``: two VideoCLIP actors embed the videos; the shards equal the local engine's
    and the index answers the same."""
    from tiny_world import make_world

    from tempclr.evaluators.video_index import FaissVideoIndex
    from tempclr_cli.index_videos import main as index_main

    world = make_world(tmp_path / "world")
    fdir = tmp_path / "features"
    fdir.mkdir()
    rng = np.random.default_rng(0)
    for i, seconds in enumerate((3, 40, 5, 70, 1)):
        x = rng.normal(size=(seconds, 512)).astype(np.float32)
        np.save(fdir / f"vid{i}.npy", (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16))
    base = [str(fdir), "--config", world["config"], "--s3d_checkpoint", world["s3d"], "--shard_videos", "2"]
    assert index_main(base + ["--out", str(tmp_path / "local"), "--device", "cpu"]) == 0
    assert index_main(base + ["--out", str(tmp_path / "ray"), "--engine", "ray", "--address", cluster.address,
                              "--num-model-actors", "2"]) == 0
    assert "5 videos, 8 windows" in capsys.readouterr().out
    for shard in range(3):
        local = np.load(tmp_path / "local" / f"vectors-{shard:05d}.npy")
        remote = np.load(tmp_path / "ray" / f"vectors-{shard:05d}.npy")
        np.testing.assert_allclose(remote, local, rtol=1e-5, atol=1e-6)
        assert (tmp_path / "ray" / f"ids-{shard:05d}.json").read_text() == \
            (tmp_path / "local" / f"ids-{shard:05d}.json").read_text()
    query = np.random.default_rng(1).normal(size=(1, local.shape[1])).astype(np.float32)
    a, b = FaissVideoIndex(str(tmp_path / "local")), FaissVideoIndex(str(tmp_path / "ray"))
    assert a.index.search(query, 5)[1].tolist() == b.index.search(query, 5)[1].tolist()
