"""tempclr's frames against the ffmpeg command line's, the pipeline the original extractor ran (MMPT's
``video_feature_extractor``): decode, ``fps=30``, ``scale`` to short side S (bicubic), centre crop S x S, raw rgb24.

Every video is written by the ffmpeg command line (``testsrc2``: moving colour bars, text, gradients); frames must
agree within 2 levels and give the same frame and row counts.  Skipped when ``ffmpeg`` is not installed
(``apt-get install ffmpeg``; CI installs it)."""
from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest

from tempclr.processors.videoreader import VideoClipReader, read_clips, scaled_size

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                reason="the ffmpeg command line is not installed (apt-get install ffmpeg): "
                                       "tempclr's frames cannot be compared with the original extractor's")


def ffmpeg(*args: str) -> bytes:
    done = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], capture_output=True)
    if done.returncode:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def source(path, size: str, rate: str, seconds: float, *encode: str, vf: str = "") -> str:
    """``testsrc2`` of ``size`` at ``rate`` for ``seconds``, encoded with ``encode`` (default H.264 yuv420p)."""
    encode = encode or ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
    filters = ["-vf", vf] if vf else []
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}", "-t", str(seconds), *filters, *encode,
           str(path))
    return str(path)


def original_frames(path: str, shown_width: int, shown_height: int, size: int) -> np.ndarray:
    """The original extractor's frames ``uint8 [n, size, size, 3]``: its ffmpeg command (``-filter_complex`` as
    ffmpeg-python writes it), the scale size computed from the displayed picture's size, bicubic named."""
    height, width = scaled_size(shown_height, shown_width, size)
    x, y = (width - size) // 2, (height - size) // 2
    graph = (f"[0]fps=fps=30[s0];[s0]scale={width}:{height}:flags=bicubic[s1];"
             f"[s1]crop={size}:{size}:{x}:{y}[s2]")
    raw = ffmpeg("-i", path, "-filter_complex", graph, "-map", "[s2]", "-f", "rawvideo", "-pix_fmt", "rgb24",
                 "pipe:")
    return np.frombuffer(raw, np.uint8).reshape(-1, size, size, 3)


def assert_same_frames(path: str, shown_width: int, shown_height: int, size: int, n_expected=None) -> np.ndarray:
    expected = original_frames(path, shown_width, shown_height, size)
    reader = VideoClipReader(path, size=size, clips_per_chunk=4)
    clips = np.concatenate(list(reader), axis=0)
    frames = clips.reshape(-1, size, size, 3)[:reader.n_frames]
    assert sorted(reader.source_size) == sorted((shown_width, shown_height))   # the file is what the test meant
    assert reader.n_frames == len(expected), f"{reader.n_frames} frames, ffmpeg gives {len(expected)}"
    assert len(clips) == math.ceil(len(expected) / 30)                       # feature rows
    difference = np.abs(frames.astype(np.int16) - expected.astype(np.int16)).max(axis=(1, 2, 3))
    assert difference.max() <= 2, f"frames differing by more than 2 levels: {np.flatnonzero(difference > 2)}"
    assert not clips.reshape(-1, size, size, 3)[reader.n_frames:].any()        # black padding
    if n_expected is not None:
        assert len(expected) == n_expected
    return frames


# --- default tier: one ffmpeg comparison per rule, small pictures --------------------------------------------

def test_29_97_fps_nearest_tick_and_end_at_224(tmp_path):
    """29.97 fps, 4.004 s (120 frames): every frame after the first sits between ticks; the end rounds to tick
    120, so 120 frames and 4 rows (not 121 and 5).  At the real size, with H.264's left chroma siting."""
    path = source(tmp_path / "ntsc.mp4", "96x54", "30000/1001", 4.004)
    assert_same_frames(path, 96, 54, 224, n_expected=120)


def test_25_fps_and_30_fps_webm(tmp_path):
    assert_same_frames(source(tmp_path / "pal.mp4", "64x36", "25", 1.6), 64, 36, 32, n_expected=48)
    webm = source(tmp_path / "thirty.webm", "64x36", "30", 1.0, "-c:v", "libvpx", "-b:v", "1M", "-deadline",
                  "realtime", "-cpu-used", "8")
    assert_same_frames(webm, 64, 36, 32, n_expected=30)


def test_late_stream_start_is_on_the_file_timeline(tmp_path):
    """Video from 0.5 s, audio from 0: the first frame is held from the file's start, 15 extra frames."""
    video = source(tmp_path / "v.mp4", "64x36", "25", 1.0)
    late = str(tmp_path / "late.mkv")
    ffmpeg("-itsoffset", "0.5", "-i", video, "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "1.5",
           "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "pcm_s16le", late)
    frames = assert_same_frames(late, 64, 36, 32, n_expected=45)
    assert all((frames[k] == frames[0]).all() for k in range(16))


def test_rotation_metadata_gives_the_displayed_picture(tmp_path):
    stored = source(tmp_path / "stored.mp4", "64x36", "25", 0.4)
    rotated = str(tmp_path / "phone.mp4")
    ffmpeg("-i", stored, "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated)
    frames = assert_same_frames(rotated, 36, 64, 32)
    upright = read_clips(stored, size=32)
    assert np.abs(frames[0].astype(int) - upright[0, 0]).max() > 50       # turned, not the stored picture


def test_exact_colour_honours_chroma_siting(tmp_path):
    """``colour="exact"``: PyAV's conversion (left-sited H.264 chroma honoured) differs from the original's."""
    path = source(tmp_path / "left.mp4", "64x36", "25", 0.2)
    original = read_clips(path, size=32)
    exact = read_clips(path, size=32, colour="exact")
    assert original.shape == exact.shape
    assert np.abs(original.astype(int) - exact.astype(int)).max() > 2
    import av

    with av.open(path) as container:
        frame = next(container.decode(video=0))
        expected = frame.reformat(width=56, height=32, format="rgb24", interpolation="BICUBIC").to_ndarray()
    np.testing.assert_array_equal(exact[0, 0], expected[:, 12:44])


def test_extract_features_passes_the_colour_mode_to_the_reader(tmp_path):
    import torch

    from tempclr.processors.models.s3dg import S3D
    from tempclr_cli.extract import extract_features, plan_videos

    torch.manual_seed(0)
    model = S3D(None).eval()
    vdir = tmp_path / "videos"
    vdir.mkdir()
    source(vdir / "left.mp4", "64x36", "25", 0.5)
    rows, pixels = {}, {}
    for colour in ("ffmpeg", "exact"):
        fdir = tmp_path / colour
        extract_features(plan_videos(str(vdir), str(fdir)), model, size=16, progress=False, colour=colour,
                         half_precision=False)
        rows[colour] = np.load(fdir / "left.npy")
        pixels[colour] = read_clips(str(vdir / "left.mp4"), size=16, colour=colour)
        clips = torch.from_numpy(pixels[colour])
        with torch.inference_mode():
            raw = model(clips.permute(0, 4, 1, 2, 3).float() / 255)["video_embedding"]
        np.testing.assert_allclose(rows[colour], (raw / raw.norm(dim=1, keepdim=True)).numpy(), rtol=0, atol=1e-6)
    assert np.abs(pixels["ffmpeg"].astype(int) - pixels["exact"]).max() > 2      # the two modes' inputs differ
    assert (rows["ffmpeg"] != rows["exact"]).any()


# --- slow tier: the full grid of video kinds -------------------------------------------------------------------

def write_vfr(path) -> str:
    """Variable frame rate: 20 frames at 25 fps, then 12 fps, then 50 fps (Matroska, millisecond timestamps)."""
    pts = "if(lt(N,20),N/25,if(lt(N,32),0.8+(N-20)/12,1.8+(N-32)/50))"
    return source(path, "64x36", "50", 1.2, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                  "-fps_mode", "vfr", vf=f"setpts='{pts}/TB'")


@pytest.mark.slow
@pytest.mark.parametrize("name, make, shown, n_expected", [
    ("25fps.mp4", lambda p: source(p, "160x90", "25", 3.0), (160, 90), 90),
    ("ntsc.mp4", lambda p: source(p, "160x90", "30000/1001", 4.004), (160, 90), 120),
    ("ntsc_b_frames.mp4", lambda p: source(p, "160x90", "30000/1001", 2.0, "-c:v", "libx264", "-preset", "medium",
                                           "-bf", "3", "-pix_fmt", "yuv420p"), (160, 90), None),
    ("thirty.webm", lambda p: source(p, "160x90", "30", 2.0, "-c:v", "libvpx-vp9", "-b:v", "1M", "-deadline",
                                     "realtime", "-cpu-used", "8"), (160, 90), 60),
    ("sixty.mp4", lambda p: source(p, "160x90", "60", 2.0), (160, 90), 60),
    ("vfr.mkv", write_vfr, (64, 36), None),
    ("odd.mp4", lambda p: source(p, "48x100", "25", 1.0, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt",
                                 "yuv444p", vf="scale=45:99"), (45, 99), 30),
    ("odd_wide.mkv", lambda p: source(p, "100x48", "24000/1001", 1.5, "-c:v", "libx264", "-preset", "ultrafast",
                                      "-pix_fmt", "yuv444p", vf="scale=99:45"), (99, 45), None),
    ("bt709_left.mp4", lambda p: source(p, "160x90", "25", 1.0, "-c:v", "libx264", "-preset", "ultrafast",
                                        "-pix_fmt", "yuv420p", "-colorspace", "bt709", "-color_primaries", "bt709",
                                        "-color_trc", "bt709"), (160, 90), 30),
    ("topleft.mp4", lambda p: source(p, "160x90", "25", 1.0, "-c:v", "libx264", "-preset", "ultrafast",
                                     "-pix_fmt", "yuv420p", "-chroma_sample_location", "topleft"), (160, 90), 30),
])
@pytest.mark.parametrize("size", [32, 224])
def test_video_kinds_match_the_ffmpeg_command_line(tmp_path, name, make, shown, n_expected, size):
    path = make(str(tmp_path / name))
    assert_same_frames(path, shown[0], shown[1], size, n_expected)


@pytest.mark.slow
@pytest.mark.parametrize("rotation, shown", [(90, (36, 64)), (180, (64, 36)), (270, (36, 64))])
def test_rotations_match_the_ffmpeg_command_line(tmp_path, rotation, shown):
    stored = source(tmp_path / "stored.mp4", "64x36", "30000/1001", 1.0)
    rotated = str(tmp_path / "phone.mp4")
    ffmpeg("-i", stored, "-c", "copy", "-metadata:s:v:0", f"rotate={rotation}", rotated)
    assert_same_frames(rotated, *shown, 32)
    assert_same_frames(rotated, *shown, 224)


@pytest.mark.slow
def test_late_start_in_mp4_and_webm(tmp_path):
    video = source(tmp_path / "v.mp4", "64x36", "30000/1001", 1.0)
    for name, audio in (("late.mp4", "aac"), ("late.mkv", "pcm_s16le")):
        late = str(tmp_path / name)
        ffmpeg("-itsoffset", "0.7", "-i", video, "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "2",
               "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", audio, late)
        assert_same_frames(late, 64, 36, 32)
