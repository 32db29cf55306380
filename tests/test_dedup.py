"""Caption de-duplication: each of the original's rules on hand-built overlaps, its seeded determinism, statistics
over every video, and the command."""
import json
import pickle

import numpy as np
import pytest

from tempclr.processors.dedupprocessor import CaptionDedupProcessor, dedup_caption, video_rng
from tempclr_cli.dedup_captions import main


class Draws:
    """Fixed values for rule 3's draw (the rule under test is the merge, not the generator)."""

    def __init__(self, *values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)


def caption(*rows):
    return {"start": [r[0] for r in rows], "end": [r[1] for r in rows], "text": [r[2] for r in rows]}


def rows(result):
    return list(zip(result["start"], result["end"], result["text"]))


def test_repeated_end_only_extends_the_previous_caption():
    got = dedup_caption(caption((0, 2, "crack the eggs"), (1, 3, "the eggs")), Draws())
    assert rows(got) == [(0, 3, "crack the eggs")]


def test_a_caption_that_starts_with_the_previous_replaces_it():
    got = dedup_caption(caption((1, 2, "crack"), (0.5, 4, "crack the eggs")), Draws())
    assert rows(got) == [(0.5, 4, "crack the eggs")]


def test_overlap_stays_with_the_previous_caption_on_a_draw_above_half():
    got = dedup_caption(caption((0, 2, "crack the eggs"), (1.5, 4, "eggs into a bowl")), Draws(0.9))
    assert rows(got) == [(0, 2, "crack the eggs"), (2, 4, "into a bowl")]


@pytest.mark.parametrize("draw", [0.1, 0.5])
def test_overlap_moves_to_the_current_caption_otherwise(draw):
    got = dedup_caption(caption((0, 2, "crack the eggs"), (1.5, 4, "eggs into a bowl")), Draws(draw))
    assert rows(got) == [(0, 1.5, "crack the"), (1.5, 4, "eggs into a bowl")]


def test_the_overlap_is_the_smallest_in_characters_as_the_original():
    # "crack the" ends with "e", the first character of "eggs ...": a one-character overlap
    got = dedup_caption(caption((0, 2, "crack the"), (2, 3, "eggs in")), Draws(0.9))
    assert rows(got) == [(0, 2, "crack the"), (2, 3, "ggs in")]


def test_no_overlap_appends_and_invalid_texts_are_dropped():
    got = dedup_caption(caption((0, 1, None), (0, 1, "  \n "), (1, 2, "whisk\nthe milk"), (2, 3, 7),
                                (3, 4, "pour batter")), Draws())
    assert rows(got) == [(1, 2, "whisk the milk"), (3, 4, "pour batter")]
    assert rows(dedup_caption(caption(), Draws())) == []


def test_a_caption_ending_before_it_starts_is_named():
    with pytest.raises(ValueError, match=r"video 'v1': caption 'pour batter' ends at 2 before it starts \(5\)"):
        dedup_caption(caption((0, 1, "whisk"), (5, 2, "pour batter")), Draws(), video_id="v1")
    with pytest.raises(ValueError, match=r"video 'v2': start/end/text lists have lengths"):
        dedup_caption({"start": [0], "end": [1, 2], "text": ["a"]}, Draws(), video_id="v2")


def rolling_captions(n_videos, seed=0):
    """Rolling ASR-like captions: every line repeats a few words of the previous one."""
    gen = np.random.default_rng(seed)
    words = "crack the eggs into a bowl whisk flour and milk pour batter in pan flip pancake serve".split()
    data = {}
    for v in range(n_videos):
        stream = [words[i] for i in gen.integers(0, len(words), 40)]
        lines, t = [], 0.0
        for k in range(0, 36, 3):
            lines.append((t, t + 2.0, " ".join(stream[k:k + 5])))
            t += 1.5
        data[f"vid{v:05d}"] = json.dumps(caption(*lines))
    return data


def write_pickle(path, data):
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return str(path)


def test_the_same_seed_gives_the_same_result_in_any_order(tmp_path):
    data = rolling_captions(40)
    first = CaptionDedupProcessor(write_pickle(tmp_path / "a.pkl", data))
    first()
    reversed_order = CaptionDedupProcessor(write_pickle(tmp_path / "b.pkl", dict(reversed(list(data.items())))))
    reversed_order()
    subset = CaptionDedupProcessor(write_pickle(tmp_path / "c.pkl", {"vid00007": data["vid00007"]}))
    subset()
    other_seed = CaptionDedupProcessor(write_pickle(tmp_path / "d.pkl", data), seed=1)
    other_seed()
    assert first.data == reversed_order.data
    assert subset.data["vid00007"] == first.data["vid00007"]
    assert first.data != other_seed.data
    # the draws are those of random.Random("<seed>:<video id>"), replayed here by hand
    raw = json.loads(data["vid00003"])
    assert json.loads(first.data["vid00003"]) == dedup_caption(raw, video_rng(0, "vid00003"))
    assert video_rng(0, "vid00003").random() == __import__("random").Random("0:vid00003").random()


def test_statistics_cover_every_video(tmp_path, capsys):
    data = rolling_captions(5000)
    feat_dir = tmp_path / "feat"
    feat_dir.mkdir()
    np.save(feat_dir / "vid04999.npy", np.zeros((20, 512), np.float16))
    processor = CaptionDedupProcessor(write_pickle(tmp_path / "raw.pkl", data), feat_dir=str(feat_dir))
    stats = processor()
    assert stats["videos"] == 5000 and stats["videos_with_features"] == 1 and stats["video_len"] == 20.0
    last = json.loads(processor.data["vid04999"])
    tokens = sum(len(t.split(" ")) for t in last["text"])
    assert stats["video_tps"] == pytest.approx(tokens / 20)
    clip_lens = []
    n_clips = []
    for entry in processor.data.values():
        entry = json.loads(entry)
        n_clips.append(len(entry["text"]))
        for i, (s, e) in enumerate(zip(entry["start"], entry["end"])):
            clip_lens.append(e - max(entry["end"][i - 1], s) if i else e - s)
    assert stats["mean_clip_len"] == pytest.approx(np.mean(clip_lens))
    assert stats["num_clip"] == pytest.approx(np.mean(n_clips))
    assert str(stats) in capsys.readouterr().out


def test_command_writes_json_strings_that_pretokenization_reads(tmp_path):
    from tempclr_cli.pretokenization import load_captions

    raw = {"v1": caption((0, 2, "crack the eggs"), (1, 3, "the eggs"), (3, 5, "whisk")),
           "v2": caption((0, 1, "pour batter"))}
    (tmp_path / "raw_caption.json").write_text(json.dumps(raw))
    assert main(["--how2dir", str(tmp_path)]) == 0
    loaded = load_captions(str(tmp_path / "raw_caption_dedup.pkl"))
    assert {k: json.loads(v) for k, v in loaded.items()} == {
        "v1": caption((0, 3, "crack the eggs"), (3, 5, "whisk")), "v2": caption((0, 1, "pour batter"))}
    with pytest.raises(SystemExit):
        main(["--captions", str(tmp_path / "raw_caption.json"), "--out", str(tmp_path / "raw_caption.json")])


def test_command_refuses_an_unwritable_output_before_the_work_and_keeps_an_earlier_output(tmp_path, capsys):
    raw = {"v1": caption((0, 2, "crack the eggs")), "v2": caption((0, 1, "pour batter"))}
    (tmp_path / "raw_caption.json").write_text(json.dumps(raw))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SystemExit):
        main(["--captions", str(tmp_path / "raw_caption.json"), "--out", str(tmp_path / "afile" / "dedup.pkl")])
    assert (f"--out: {tmp_path / 'afile'} exists and is not a folder; remove it or choose another output folder"
            in capsys.readouterr().err)
    out = tmp_path / "dedup.pkl"
    assert main(["--captions", str(tmp_path / "raw_caption.json"), "--out", str(out)]) == 0
    before = out.read_bytes()
    raw["v3"] = {"start": [0, 1], "end": [1], "text": ["a", "b"]}             # start/end/text of unequal length
    (tmp_path / "raw_caption.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"video 'v3': start/end/text lists have lengths"):
        main(["--captions", str(tmp_path / "raw_caption.json"), "--out", str(out)])
    assert out.read_bytes() == before
