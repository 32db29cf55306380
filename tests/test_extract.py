"""PyAV decoding to 30-frame clips and the resumable S3D feature extractor, on tiny videos written by PyAV."""
import math
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction

import numpy as np
import pytest
import torch

from synthetic_video import write_audio_only, write_video, write_zero_frame_mkv
from tempclr.processors.models.s3dg import S3D, load_s3d
from tempclr.processors.videoreader import VideoClipReader, VideoDecodeError, read_clips, scaled_size
from tempclr_cli.extract import extract_features, main, plan_videos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NTSC = Fraction(30000, 1001)


@pytest.fixture(scope="module", autouse=True)
def torch_on_one_thread():
    """torch on one intra-op thread in this module: the tiny S3D forwards here (16-pixel crops) cost milliseconds,
    but with two OpenMP threads beside the decoding threads on a busy 2-core machine the threads' spinning waits
    made them about 50 times slower (3 tiny videos: 7 s against 0.13 s), which the time guard counts."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def s3d_checkpoint(tmp_path_factory) -> str:
    """A randomly initialised S3D in the release layout (the real weights are not redistributable)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("s3d") / "s3d_random.pth"
    torch.save(S3D(None).state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def s3d(s3d_checkpoint) -> S3D:
    return load_s3d(s3d_checkpoint)


def nearest_tick(t) -> int:
    """``t * 30`` rounded to the nearest integer, halves up (ffmpeg's fps filter, ``AV_ROUND_NEAR_INF``)."""
    return math.floor(Fraction(t) * 30 + Fraction(1, 2))


def shown_index(k: int, fps) -> int:
    """The input frame ffmpeg's fps=30 filter shows at output tick k: the last j whose nearest tick is <= k."""
    j = 0
    while nearest_tick(Fraction(j + 1) / Fraction(fps)) <= k:
        j += 1
    return j


@pytest.mark.parametrize("fps, n_frames", [(25, 38), (NTSC, 45), (50, 40)])
def test_resampling_to_30_fps_shows_the_frame_at_the_nearest_tick(tmp_path, fps, n_frames):
    path = write_video(str(tmp_path / "gray.mp4"), fps, 48, 32, n_frames)
    clips = read_clips(path, size=16)
    duration = Fraction(n_frames) / Fraction(fps)
    n_out = nearest_tick(duration)      # the stream ends at the last frame's end, rounded to the nearest tick
    assert clips.shape == (math.ceil(n_out / 30), 30, 16, 16, 3)
    frames = clips.reshape(-1, 16, 16, 3).astype(np.int32)
    levels = np.round(frames.mean(axis=(1, 2, 3)) / 5).astype(int)
    assert levels[:n_out].tolist() == [shown_index(k, fps) for k in range(n_out)]
    assert np.abs(frames[:n_out] - 5 * levels[:n_out, None, None, None]).max() <= 1   # uniform frames
    assert not frames[n_out:].any()                                                   # zero padding
    assert clips.shape[0] == math.ceil(n_out / 30)


def bands(axis: int, first: int, last: int):
    """Red before index ``first`` along ``axis`` (0 rows, 1 columns), blue from ``last`` on, green between."""
    def frame(i, height, width):
        img = np.zeros((height, width, 3), np.uint8)
        img[..., 1] = 255
        index = np.arange(height if axis == 0 else width)
        red = index < first
        blue = index >= last
        if axis == 0:
            img[red], img[blue] = (255, 0, 0), (0, 0, 255)
        else:
            img[:, red], img[:, blue] = (255, 0, 0), (0, 0, 255)
        return img
    return frame


@pytest.mark.parametrize("width, height, axis, first, last", [
    (96, 48, 1, 20, 76),    # landscape: the crop keeps source columns ~24..72
    (45, 99, 0, 22, 77),    # portrait, odd sizes: scaled to 224 x 492, the crop keeps source rows ~26.5..72
])
def test_short_side_224_and_centre_crop(tmp_path, width, height, axis, first, last):
    path = write_video(str(tmp_path / "bands.mp4"), 25, width, height, 3, frame=bands(axis, first, last))
    clips = read_clips(path)
    assert clips.shape == (1, 30, 224, 224, 3)
    picture = clips[0, 0].astype(int)
    assert picture[..., 1].min() > 230 and picture[..., 0].max() < 25 and picture[..., 2].max() < 25
    assert scaled_size(height, width, 224) == ((224, 448) if axis == 1 else (492, 224))


def test_a_45_second_25_fps_video_gives_45_clips_at_224(tmp_path):
    path = write_video(str(tmp_path / "long.mp4"), 25, 32, 24, 45 * 25, lossless=False)
    reader = VideoClipReader(path, clips_per_chunk=8)
    sizes = [len(chunk) for chunk in reader]
    assert sizes == [8, 8, 8, 8, 8, 5]            # memory bounded by the chunk, not the video
    assert reader.n_frames == 1350 and reader.n_clips == 45 and reader.seconds == 45.0


@pytest.mark.parametrize("make, reason", [
    (lambda p: open(p, "wb").write(b"\x00" * 64 + b"garbage" * 50), r"cannot open \(InvalidDataError"),
    (lambda p: write_audio_only(p), r"no video stream \(streams: audio\)"),
    (lambda p: write_zero_frame_mkv(p), r"zero frames decoded from its video stream"),
])
def test_unusable_videos_raise_a_decode_error_naming_the_file(tmp_path, make, reason):
    path = str(tmp_path / "bad.mkv")
    make(path)
    with pytest.raises(VideoDecodeError, match=r"bad\.mkv: " + reason):
        read_clips(path, size=16)


def test_features_equal_s3d_on_the_decoded_clips_across_batches(tmp_path, s3d):
    vdir, fdir = tmp_path / "videos", tmp_path / "feats"
    vdir.mkdir()
    write_video(str(vdir / "one.mp4"), 25, 40, 30, 25)            # 1 s -> 1 row
    write_video(str(vdir / "two.mp4"), NTSC, 33, 47, 45)          # 1.5015 s, portrait, odd -> 2 rows
    write_video(str(vdir / "three.mp4"), 25, 30, 40, 60)          # 2.4 s -> 3 rows
    plan = plan_videos(str(vdir), str(fdir))
    summary = extract_features(plan, s3d, batch_size=3, num_decoding_thread=2, size=16, progress=False)
    assert sorted(summary.done) == sorted(v for v, _ in plan) and not summary.failed
    # seconds of video: the resampled frames / 30, the end rounded to the nearest 1/30 s (45.045 -> 45 for two)
    assert summary.video_seconds == pytest.approx((30 + 45 + 72) / 30)
    for name, rows in (("one", 1), ("two", 2), ("three", 3)):
        features = np.load(fdir / f"{name}.npy")
        assert features.shape == (rows, 512) and features.dtype == np.float16
        clips = torch.from_numpy(read_clips(str(vdir / f"{name}.mp4"), size=16))
        with torch.inference_mode():
            raw = s3d(clips.permute(0, 4, 1, 2, 3).float() / 255)["video_embedding"]
        expected = (raw / raw.norm(dim=1, keepdim=True)).numpy()
        np.testing.assert_allclose(features.astype(np.float32), expected, atol=2e-3)
        np.testing.assert_allclose(np.linalg.norm(features.astype(np.float32), axis=1), 1.0, atol=2e-3)


@pytest.mark.slow
def test_cli_at_224_with_corrupt_files_logged_and_skipped(tmp_path, s3d_checkpoint, capsys):
    vdir, fdir = tmp_path / "videos", tmp_path / "feats"
    (vdir / "sub").mkdir(parents=True)
    write_video(str(vdir / "landscape25.mp4"), 25, 64, 48, 25)           # 1 s
    write_video(str(vdir / "sub" / "portrait2997.mp4"), NTSC, 33, 47, 45)  # 1.5015 s, in a sub-folder
    (vdir / "corrupt.mp4").write_bytes(b"\x00" * 64 + b"not a video" * 40)
    with open(vdir / "landscape25.mp4", "rb") as f:
        (vdir / "truncated.mp4").write_bytes(f.read()[:300])
    write_audio_only(str(vdir / "audio_only.wav"))
    write_zero_frame_mkv(str(vdir / "empty.mkv"))
    rc = main(["--vdir", str(vdir), "--fdir", str(fdir), "--type", "s3d", "--s3d_checkpoint", s3d_checkpoint,
               "--batch_size", "2", "--num_decoding_thread", "2", "--device", "cpu", "--no_progress"])
    out, err = capsys.readouterr()
    assert rc == 0
    for name, rows in (("landscape25", 1), ("portrait2997", 2)):
        features = np.load(fdir / f"{name}.npy")
        assert features.shape == (rows, 512) and features.dtype == np.float16
        np.testing.assert_allclose(np.linalg.norm(features.astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert sorted(os.listdir(fdir)) == ["extract_errors.log", "landscape25.npy", "portrait2997.npy"]
    log = (fdir / "extract_errors.log").read_text().splitlines()
    logged = {line.split("\t")[1]: line.split("\t")[2] for line in log}
    assert sorted(logged) == sorted(str(vdir / n) for n in ("corrupt.mp4", "truncated.mp4", "audio_only.wav",
                                                            "empty.mkv"))
    assert logged[str(vdir / "audio_only.wav")] == "no video stream (streams: audio)"
    assert logged[str(vdir / "empty.mkv")] == "zero frames decoded from its video stream"
    assert logged[str(vdir / "corrupt.mp4")].startswith("cannot open (InvalidDataError")
    for name in ("corrupt.mp4", "truncated.mp4", "audio_only.wav", "empty.mkv"):
        assert f"failed: {vdir / name}: " in err
    assert "done 2, skipped 0 (features exist), failed 4; 2.5 s of video" in out   # (30 + 45) / 30 s
    assert rc == 0
    # --strict: the same failures (features of the good videos exist now, so they are skipped) give status 3
    rc = main(["--vdir", str(vdir), "--fdir", str(fdir), "--s3d_checkpoint", s3d_checkpoint, "--strict",
               "--device", "cpu", "--no_progress"])
    out, _ = capsys.readouterr()
    assert rc == 3 and "done 0, skipped 2 (features exist), failed 4" in out
    assert len((fdir / "extract_errors.log").read_text().splitlines()) == 8


def test_a_45_second_video_gives_45_rows(tmp_path, s3d):
    vdir, fdir = tmp_path / "videos", tmp_path / "feats"
    vdir.mkdir()
    write_video(str(vdir / "long.mp4"), 25, 32, 24, 45 * 25, lossless=False)
    summary = extract_features(plan_videos(str(vdir), str(fdir)), s3d, batch_size=16, size=16, progress=False)
    features = np.load(fdir / "long.npy")
    assert features.shape == (45, 512) and features.dtype == np.float16
    np.testing.assert_allclose(np.linalg.norm(features.astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert summary.video_seconds == 45.0


@pytest.mark.slow
def test_an_interrupted_run_finishes_only_the_missing_videos(tmp_path, s3d_checkpoint, s3d):
    vdir, fdir = tmp_path / "videos", tmp_path / "feats"
    vdir.mkdir()
    write_video(str(vdir / "a.mp4"), 25, 32, 24, 25, lossless=False)          # 1 s
    write_video(str(vdir / "b.mp4"), 25, 32, 24, 40 * 25, lossless=False)     # 40 s: the run dies inside it
    write_video(str(vdir / "c.mp4"), 25, 32, 24, 50, lossless=False)          # 2 s
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "tempclr_cli.extract", "--vdir", str(vdir), "--fdir", str(fdir),
               "--s3d_checkpoint", s3d_checkpoint, "--size", "16", "--batch_size", "4",
               "--num_decoding_thread", "1", "--device", "cpu", "--no_progress"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not (fdir / "a.npy").exists():
            if process.poll() is not None:
                pytest.fail(f"the extractor exited ({process.returncode}) before writing a.npy: "
                            f"{process.stderr.read().decode()}")
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)       # a crash: no clean-up code runs
    finally:
        process.wait()
        process.stderr.close()
    assert not (fdir / "b.npy").exists() and not (fdir / "c.npy").exists()
    before = (fdir / "a.npy").read_bytes(), os.stat(fdir / "a.npy").st_mtime_ns
    stale = fdir / ".b.npy.deadrun.npy"                  # what a run killed while writing b.npy leaves
    stale.write_bytes(b"partial")
    summary = extract_features(plan_videos(str(vdir), str(fdir)), s3d, batch_size=4, size=16, progress=False)
    assert summary.skipped == [str(vdir / "a.mp4")]
    assert sorted(summary.done) == [str(vdir / "b.mp4"), str(vdir / "c.mp4")]
    assert ((fdir / "a.npy").read_bytes(), os.stat(fdir / "a.npy").st_mtime_ns) == before
    assert np.load(fdir / "b.npy").shape == (40, 512) and np.load(fdir / "c.npy").shape == (2, 512)
    assert not stale.exists()
    assert sorted(os.listdir(fdir)) == ["a.npy", "b.npy", "c.npy"]


def test_split_parts_cover_every_video_once(tmp_path):
    vdir = tmp_path / "videos"
    vdir.mkdir()
    names = [f"v{i}.mp4" for i in range(7)]
    for name in names:
        (vdir / name).write_bytes(b"")
    parts = [plan_videos(str(vdir), str(tmp_path / "f"), f"{i}/3") for i in range(3)]
    assert [len(p) for p in parts] == [2, 2, 3]
    assert [os.path.basename(v) for p in parts for v, _ in p] == names
    assert parts[0][0][1] == str(tmp_path / "f" / "v0.npy")


def test_what_cannot_run_exits_non_zero(tmp_path, s3d_checkpoint, capsys):
    vdir, fdir = tmp_path / "videos", tmp_path / "feats"
    (vdir / "x").mkdir(parents=True)
    write_video(str(vdir / "clip.mp4"), 25, 32, 24, 5, lossless=False)
    base = ["--vdir", str(vdir), "--fdir", str(fdir), "--device", "cpu", "--no_progress"]

    assert main(base + ["--s3d_checkpoint", str(tmp_path / "missing.pth")]) == 1
    assert "S3D checkpoint not found: " + str(tmp_path / "missing.pth") in capsys.readouterr().err

    wrong = tmp_path / "wrong.pth"
    state = torch.load(s3d_checkpoint)
    del state["fc.bias"]
    torch.save(state, wrong)
    assert main(base + ["--s3d_checkpoint", str(wrong)]) == 1
    assert "1 missing keys [fc.bias]" in capsys.readouterr().err

    assert main(["--vdir", str(tmp_path / "nope"), "--fdir", str(fdir), "--s3d_checkpoint", s3d_checkpoint]) == 1
    assert f"--vdir {tmp_path / 'nope'}: not a folder" in capsys.readouterr().err

    if not torch.cuda.is_available():
        assert main(base[:4] + ["--device", "cuda", "--s3d_checkpoint", s3d_checkpoint]) == 1
        assert "CUDA is not available on this machine" in capsys.readouterr().err

    write_video(str(vdir / "x" / "clip.webm"), 25, 32, 24, 5, codec="libvpx-vp9", pix_fmt="yuv420p",
                lossless=False)
    assert main(base + ["--s3d_checkpoint", s3d_checkpoint]) == 1
    assert "would both write " + str(fdir / "clip.npy") + "; rename one of them" in capsys.readouterr().err
    assert not fdir.exists()

    for flags, message in ((["--split", "3/3"], "need n >= 1 and 0 <= i < n"), (["--type", "2d"], "only s3d"),
                           (["--size", "15"], "must be an even number"),
                           (["--colour", "bt601"], "invalid choice: 'bt601'")):
        with pytest.raises(SystemExit) as stop:
            main(base + ["--s3d_checkpoint", s3d_checkpoint] + flags)
        assert stop.value.code == 2 and message in capsys.readouterr().err


def test_features_are_the_same_bytes_whatever_the_thread_count_and_the_other_videos(tmp_path, s3d):
    """A video's clips go through S3D in batches of that video alone ([0, b), [b, 2b), ...): its feature file does not
    depend on the decoding threads or on which other videos are extracted in the same run."""
    vdir = tmp_path / "videos"
    vdir.mkdir()
    for name, n_frames in (("a", 25 * 3), ("b", 25 * 2), ("c", 40)):
        write_video(str(vdir / f"{name}.mp4"), 25, 32, 24, n_frames, frame=lambda i, h, w: np.random.default_rng(
            i).integers(0, 255, (h, w, 3), dtype=np.uint8), lossless=False)
    runs = {}
    for threads in (1, 3):
        fdir = tmp_path / f"threads{threads}"
        extract_features(plan_videos(str(vdir), str(fdir)), s3d, batch_size=2, num_decoding_thread=threads,
                         size=16, progress=False)
        runs[threads] = {name: (fdir / f"{name}.npy").read_bytes() for name in "abc"}
    assert runs[1] == runs[3]
    alone = tmp_path / "alone"
    extract_features([(str(vdir / "b.mp4"), str(alone / "b.npy"))], s3d, batch_size=2, size=16, progress=False)
    assert (alone / "b.npy").read_bytes() == runs[1]["b"]
