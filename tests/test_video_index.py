"""tempclr-index: vectors in shards, an exact index equal to brute force, IVF-PQ recall@10 on clustered random data
above a floor, resume, and tempclr-search-videos --index agreeing with the plain-folder search."""
import json
import os

import numpy as np
import pytest

from tempclr.evaluators.video_index import FaissVideoIndex, IndexParams, build_index, exact_topk
from tempclr.utils.fileio import save_npy_atomic, write_json_atomic

# IVF-PQ with float16 re-ranking on 4000 clustered 32-d unit vectors (100 clusters, noise 0.3 per dimension):
# measured 0.95; the floor leaves room for faiss versions and seeds
IVFPQ_RECALL_FLOOR = 0.85


@pytest.fixture
def one_thread():
    """torch and faiss on one thread: on a machine shared with other jobs, OpenMP threads that wait for a core
    spin, and the CPU time they burn is not the test's work."""
    import faiss
    import torch

    threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(threads[0])
    faiss.omp_set_num_threads(threads[1])


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(100, dim))
    x = (centres[rng.integers(0, 100, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_shards(out, x: np.ndarray, per_shard: int) -> list[int]:
    shards = []
    for shard, first in enumerate(range(0, len(x), per_shard)):
        save_npy_atomic(str(out / f"vectors-{shard:05d}.npy"), x[first:first + per_shard])
        write_json_atomic(str(out / f"ids-{shard:05d}.json"),
                          [[f"v{i // 3}", 32 * (i % 3)] for i in range(first, min(first + per_shard, len(x)))])
        shards.append(shard)
    return shards


def test_the_exact_index_equals_brute_force(tmp_path):
    x = clustered(3000, 32)
    shards = write_shards(tmp_path, x, 700)
    manifest = build_index(str(tmp_path), shards, IndexParams(), extra={"feature_dir": str(tmp_path)},
                           log=lambda line: None)
    assert manifest["kind"] == "flat" and manifest["count"] == 3000 and manifest["max_windows"] == 3
    queries = np.random.default_rng(1).normal(size=(20, 32)).astype(np.float32)
    brute = queries @ x.T
    expected = np.argsort(-brute, axis=1, kind="stable")[:, :10]
    index = FaissVideoIndex(str(tmp_path))
    scores, rows = index.index.search(queries, 10)
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected, axis=1), rtol=1e-5, atol=1e-5)
    streamed_scores, streamed_rows = exact_topk(str(tmp_path), shards, queries, 10)       # shard by shard
    np.testing.assert_array_equal(streamed_rows, expected)
    np.testing.assert_allclose(streamed_scores, scores, rtol=1e-5, atol=1e-5)
    # a video's windows are found by the video's id
    assert index.candidates(x[7], 1)[0] == "v2"


def test_ivfpq_recall_at_10_is_reported_and_above_the_floor(tmp_path, one_thread):
    x = clustered(4000, 32, seed=2)
    shards = write_shards(tmp_path, x, 1500)
    lines = []
    manifest = build_index(str(tmp_path), shards, IndexParams(exact_below=1000, nlist=64, n_queries=200),
                           extra={"feature_dir": str(tmp_path)}, log=lines.append)
    assert manifest["kind"] == "ivfpq"
    assert manifest["ivfpq"] == {"nlist": 64, "m": 8, "nbits": 8, "nprobe": 8, "train_size": 3800,
                                 "refine": "fp16", "k_factor": 4}
    assert manifest["recall_at_10"] >= IVFPQ_RECALL_FLOOR
    assert f"recall@10 against exact search {manifest['recall_at_10']:.3f} on 200 held-out windows" in lines[-1]
    assert "nlist 64, m 8 x 8 bits, nprobe 8, refine fp16" in lines[-1]
    stored = json.loads((tmp_path / "index.json").read_text())
    assert stored["recall_at_10"] == manifest["recall_at_10"]
    # the reloaded index searches with the stored parameters: the same recall on its own held-out sample
    index = FaissVideoIndex(str(tmp_path))
    queries = x[np.random.default_rng(0).permutation(4000)[:200]]
    _, exact = exact_topk(str(tmp_path), shards, queries, 10)
    _, approx = index.index.search(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx.tolist(), exact.tolist())])
    assert recall >= IVFPQ_RECALL_FLOOR
    with pytest.raises(ValueError, match="too few to train IVF-PQ"):
        build_index(str(tmp_path), shards, IndexParams(exact_below=1000, nlist=4000), log=lambda line: None)


def test_index_and_search_an_index_folder_as_a_plain_folder(tmp_path_factory, capsys, one_thread):
    """tempclr-index on a feature folder, resumed after a lost shard, then tempclr-search-videos --index: the hits,
    scores and best seconds of the plain-folder search (``VideoIndex``) on the same features."""
    from tiny_world import make_world

    from tempclr.evaluators.video_index import index_features
    from tempclr.evaluators.video_search import VideoIndex, embed_queries
    from tempclr.models import MMPTModel
    from tempclr_cli.index_videos import main as index_main
    from tempclr_cli.search_videos import main as search_main

    world = make_world(tmp_path_factory.mktemp("index"))
    fdir, out = world["root"] / "features", world["root"] / "index"
    fdir.mkdir()
    rng = np.random.default_rng(0)
    features = {}
    for name, seconds in (("short", 3), ("long", 40), ("mid", 5)):
        x = rng.normal(size=(seconds, 512)).astype(np.float32)
        features[name] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
        np.save(fdir / f"{name}.npy", features[name])
    flags = [str(fdir), "--config", world["config"], "--s3d_checkpoint", world["s3d"], "--out", str(out),
             "--device", "cpu", "--shard_videos", "2"]
    assert index_main(flags) == 0
    assert "3 videos, 4 windows" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["ids-00000.json", "ids-00001.json", "index.faiss", "index.json",
                                       "vectors-00000.npy", "vectors-00001.npy"]
    model, tokenizer, aligner = MMPTModel.from_pretrained(world["config"], s3d_checkpoint=world["s3d"])
    stamp = os.stat(out / "vectors-00000.npy").st_mtime_ns
    first = (out / "vectors-00001.npy").read_bytes()
    (out / "ids-00001.json").unlink()        # as if killed before the second shard was complete: it is redone
    index_features(str(fdir), model, str(out), shard_videos=2, log=lambda line: None)
    assert os.stat(out / "vectors-00000.npy").st_mtime_ns == stamp and (out / "ids-00001.json").exists()
    assert (out / "vectors-00001.npy").read_bytes() == first
    query = "crack the eggs"
    plain = VideoIndex(model, features).query(embed_queries(model, tokenizer, aligner, [query])[0], topk=3)
    assert search_main(["--index", str(out), "--config", world["config"], "--s3d_checkpoint", world["s3d"],
                        "--topk", "3", "--device", "cpu", query]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"query: {query}" and len(lines) == 4
    for line, hit in zip(lines[1:], plain):
        assert line.split()[1] == hit.video and f"score {hit.score:.4f}" in line
        seconds = ", ".join(f"{s}s ({v:.3f})" for s, v in hit.seconds)
        assert line.endswith(f"best seconds: {seconds}")
    assert index_main([str(world["root"] / "nothing"), *flags[1:]]) == 1
    assert "not a folder of feature files" in capsys.readouterr().err
