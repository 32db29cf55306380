"""tempclr-search-videos: features extracted or reused, windows indexed with faiss, videos ranked by their best
window, best seconds per hit; checked against a plain loop over the model."""
import os

import numpy as np
import pytest
import torch

from synthetic_video import write_video
from tiny_world import make_world
from tempclr.models import MMPTModel
from tempclr_cli.search_videos import main, search

QUERIES = ["crack the eggs", "pour batter into a pan", "whisk flour and milk"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = make_world(tmp_path_factory.mktemp("search"))
    videos = world["root"] / "videos"
    videos.mkdir()
    pattern = lambda seed: lambda i, h, w: np.random.default_rng(seed * 1000 + i // 10).integers(  # noqa: E731
        0, 256, (h, w, 3), dtype=np.uint8)
    write_video(str(videos / "short.mp4"), 25, 32, 24, 3 * 25, frame=pattern(1), lossless=False)
    write_video(str(videos / "long.mp4"), 25, 32, 24, 40 * 25, frame=pattern(2), lossless=False)   # 2 windows
    write_video(str(videos / "mid.mp4"), 30, 24, 32, 5 * 30, frame=pattern(3), lossless=False)
    world["videos"] = str(videos)
    return world


def oracle(world, query):
    """Scores and best seconds by a plain loop: each 32-second window through the model's video branch."""
    model, tokenizer, aligner = MMPTModel.from_pretrained(world["config"], s3d_checkpoint=world["s3d"])
    caps, cmasks = (torch.as_tensor(x)[None] for x in aligner._build_text_seq(
        tokenizer(query, add_special_tokens=False)["input_ids"]))
    results = {}
    with torch.no_grad():
        text = model.forward_text(caps, cmasks)[0]
        for name in ("short", "long", "mid"):
            feats = torch.from_numpy(np.load(os.path.join(world["videos"], ".s3d_features", f"{name}.npy"))).float()
            window_scores, second_scores = [], []
            for start in range(0, len(feats), 32):
                piece = feats[start:start + 32]
                vfeats = torch.zeros(1, 32, 512)
                vfeats[0, :len(piece)] = piece
                vmasks = torch.zeros(1, 32, dtype=torch.bool)
                vmasks[0, :len(piece)] = True
                ids = torch.tensor([[tokenizer.cls_token_id, tokenizer.sep_token_id]])
                pooled = model.model.forward_video(vfeats, vmasks, ids, torch.ones(1, 2, dtype=torch.bool))[0]
                hidden = model.model.forward_video(vfeats, vmasks, ids, torch.ones(1, 2, dtype=torch.bool),
                                                   output_hidden_states=True)[0]
                window_scores.append(float(pooled @ text))
                second_scores.extend(float(hidden[1 + s] @ text) for s in range(len(piece)))
            results[os.path.join(world["videos"], f"{name}.mp4")] = (max(window_scores), second_scores)
    return results


def test_search_ranks_videos_by_their_best_window(world):
    results = search(world["videos"], world["config"], QUERIES, s3d_checkpoint=world["s3d"], topk=2, size=16,
                     device="cpu")
    assert list(results) == QUERIES
    feats = {n: np.load(os.path.join(world["videos"], ".s3d_features", f"{n}.npy")) for n in ("short", "long", "mid")}
    assert {n: f.shape for n, f in feats.items()} == {"short": (3, 512), "long": (40, 512), "mid": (5, 512)}
    for query, hits in results.items():
        expected = oracle(world, query)
        ranking = sorted(expected, key=lambda v: -expected[v][0])[:2]
        assert [hit.video for hit in hits] == ranking
        for hit in hits:
            score, seconds = expected[hit.video]
            assert hit.score == pytest.approx(score, rel=1e-4, abs=1e-4)
            best = sorted(range(len(seconds)), key=lambda s: -seconds[s])[:3]
            assert [s for s, _ in hit.seconds] == best
            assert [v for _, v in hit.seconds] == pytest.approx([seconds[s] for s in best], rel=1e-4, abs=1e-4)


def test_top_1_searches_fewer_windows_than_the_index_holds(world):
    results = search(world["videos"], world["config"], QUERIES, s3d_checkpoint=world["s3d"], topk=1, size=16,
                     device="cpu")
    for query, hits in results.items():
        expected = oracle(world, query)
        assert [hit.video for hit in hits] == [max(expected, key=lambda v: expected[v][0])]


def test_command_reuses_features_and_prints_hits(world, capsys):
    feature = os.path.join(world["videos"], ".s3d_features", "long.npy")
    search(world["videos"], world["config"], QUERIES[:1], s3d_checkpoint=world["s3d"], size=16, device="cpu")
    before = os.stat(feature).st_mtime_ns
    rc = main(["--videos", world["videos"], "--config", world["config"], "--s3d_checkpoint", world["s3d"],
               "--size", "16", "--topk", "3", "--device", "cpu", *QUERIES[:2]])
    out = capsys.readouterr().out
    assert rc == 0 and os.stat(feature).st_mtime_ns == before
    lines = out.splitlines()
    assert lines[0] == f"query: {QUERIES[0]}" and lines[4] == f"query: {QUERIES[1]}"
    assert [line.split()[0] for line in lines[1:4]] == ["1.", "2.", "3."]
    assert all("score " in line and "best seconds: " in line for line in lines[1:4] + lines[5:8])


def test_command_errors(world, tmp_path, capsys):
    rc = main(["--videos", str(tmp_path / "none"), "--config", world["config"], "--s3d_checkpoint", world["s3d"],
               "eggs"])
    assert rc == 1 and f"--vdir {tmp_path / 'none'}: not a folder" in capsys.readouterr().err
    rc = main(["--videos", world["videos"], "--config", world["config"], "--checkpoint", "missing.pt",
               "--s3d_checkpoint", world["s3d"], "eggs"])
    assert rc == 1 and "checkpoint not found: " in capsys.readouterr().err


def test_empty_query_and_misspelt_config_key(world, tmp_path, capsys):
    rc = main(["--videos", world["videos"], "--config", world["config"], "--s3d_checkpoint", world["s3d"],
               "eggs", "  "])
    assert rc == 1
    assert capsys.readouterr().err.strip() == ("tempclr-search-videos: error: query 2 is empty; give each query as a "
                                               "non-empty text, e.g. tempclr-search-videos \"crack the eggs\" ...")
    misspelt = tmp_path / "misspelt.yaml"
    misspelt.write_text(f"includes: {world['config']}\ndataset:\n  max_vidoe_len: 16\n")
    rc = main(["--videos", world["videos"], "--config", str(misspelt), "--s3d_checkpoint", world["s3d"], "eggs"])
    assert rc == 1
    assert capsys.readouterr().err.strip() == (f"tempclr-search-videos: error: {misspelt}: dataset.max_vidoe_len: "
                                               "unknown key; did you mean max_video_len?")


def test_a_truncated_cached_feature_file_is_named(world, tmp_path, capsys):
    import shutil

    videos = tmp_path / "videos"
    shutil.copytree(world["videos"], videos, ignore=shutil.ignore_patterns(".s3d_features"))
    cache = videos / ".s3d_features"
    cache.mkdir()
    for name, seconds in (("short", 3), ("long", 40), ("mid", 5)):    # a cache as an earlier search left it
        np.save(cache / f"{name}.npy", np.ones((seconds, 512), np.float32))
    cached = cache / "mid.npy"
    cached.write_bytes(cached.read_bytes()[:-64])
    rc = main(["--videos", str(videos), "--config", world["config"], "--s3d_checkpoint", world["s3d"], "--size", "16",
               "--device", "cpu", "eggs"])
    err = capsys.readouterr().err
    assert rc == 1 and f"{cached} is truncated: " in err and "delete it and search again to re-extract it" in err, err
