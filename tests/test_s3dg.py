"""S3D-G: the released state-dict layout, strict loading by key, and the forward's shapes and pieces."""
import json
import os
import re

import numpy as np
import pytest
import torch

from tempclr.processors.models import S3D, load_s3d
from tempclr.processors.models.s3dg import MaxPool3dTFPadding, STConv3D, load_s3d_state

# names and shapes of the 537 tensors of the released s3d_howto100m.pth (in tests/data)
LAYOUT_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "s3d_state_dict.json")


@pytest.fixture(scope="module")
def layout() -> dict:
    with open(LAYOUT_JSON) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def model() -> S3D:
    torch.manual_seed(0)
    return S3D(None).eval()


def release_like_state(layout: dict, seed: int = 1, dtype=torch.float32) -> dict:
    """Random tensors in the release's layout, built from the JSON alone (not from the model)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(int(torch.randint(1, 1000, (), generator=gen)), dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = (torch.rand(shape, generator=gen) + 0.5).to(dtype)
        else:
            state[key] = torch.randn(shape, generator=gen).to(dtype)
    return state


def test_state_dict_layout_equals_the_release(model, layout):
    state = model.state_dict()
    assert len(layout) == 537
    assert len(state) == 537
    assert sorted(state) == sorted(layout)
    assert {k: list(v.shape) for k, v in state.items()} == layout
    # the text module is built with the release's vocabulary size even without a dictionary
    assert list(state["text_module.word_embd.weight"].shape) == [66250, 300]


def test_random_checkpoint_in_the_release_layout_loads_strictly(tmp_path, layout):
    state = release_like_state(layout)
    path = tmp_path / "s3d_howto100m.pth"
    torch.save(state, path)
    loaded = load_s3d(str(path))
    assert not loaded.training
    got = loaded.state_dict()
    assert sorted(got) == sorted(state)
    for key, value in state.items():
        assert torch.equal(got[key], value), key


def test_half_precision_checkpoint_loads_as_float32(tmp_path, layout):
    state = release_like_state(layout, dtype=torch.float16)
    path = tmp_path / "s3d_fp16.pth"
    torch.save({"state_dict": state}, path)
    got = load_s3d(str(path)).state_dict()
    assert got["fc.weight"].dtype == torch.float32
    assert torch.equal(got["fc.weight"], state["fc.weight"].float())


@pytest.mark.parametrize("change, named", [
    ("drop", r"1 missing keys \[mixed_4d\.conv_b1_b\.bn2\.running_var\]"),
    ("add", r"1 unexpected keys \[head\.weight\]"),
    ("shape", r"1 tensors with the wrong shape \[fc\.weight \(400, 1024\) \(S3D has \(512, 1024\)\)\]"),
])
def test_wrong_checkpoint_is_reported_by_key(tmp_path, layout, change, named):
    state = release_like_state(layout)
    if change == "drop":
        del state["mixed_4d.conv_b1_b.bn2.running_var"]
    elif change == "add":
        state["head.weight"] = torch.zeros(3)
    else:
        state["fc.weight"] = torch.zeros(400, 1024)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=re.escape(str(path)) + r" does not match S3D \(537 tensors\): " + named):
        load_s3d(str(path))


def test_data_parallel_checkpoint_gets_a_hint(tmp_path, layout):
    path = tmp_path / "dp.pth"
    torch.save({"module." + k: v for k, v in release_like_state(layout).items()}, path)
    with pytest.raises(ValueError, match=r"537 missing keys .*537 unexpected keys .*saved from nn\.DataParallel"):
        load_s3d(str(path))


def test_missing_and_unreadable_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"S3D checkpoint not found: .*nope\.pth.*--s3d_checkpoint"):
        load_s3d_state(str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"bad\.pth: not a loadable PyTorch state dict"):
        load_s3d_state(str(bad))
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(ValueError, match=r"list\.pth: expected a state dict \(name -> tensor\), got list"):
        load_s3d_state(str(listed))


def test_space_to_depth_matches_a_pixel_loop():
    x = torch.arange(2 * 3 * 4 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 4, 6)
    got = S3D._space_to_depth(x)
    assert got.shape == (2, 24, 2, 2, 3)
    for b in range(2):
        for dt in range(2):
            for dh in range(2):
                for dw in range(2):
                    for c in range(3):
                        channel = ((dt * 2 + dh) * 2 + dw) * 3 + c
                        for t in range(2):
                            for h in range(2):
                                for w in range(3):
                                    assert got[b, channel, t, h, w] == x[b, c, 2 * t + dt, 2 * h + dh, 2 * w + dw]


def test_tf_same_max_pool_pads_at_the_end():
    # 1x3x3 stride 1x2x2 on a 4x4 plane: TF 'SAME' pads one zero row/column after, none before
    pool = MaxPool3dTFPadding((1, 3, 3), (1, 2, 2))
    x = torch.tensor([[1., 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]])[None, None, None]
    padded = torch.zeros(5, 5)
    padded[:4, :4] = x[0, 0, 0]
    expected = torch.tensor([[padded[r:r + 3, c:c + 3].max() for c in (0, 2)] for r in (0, 2)])
    assert torch.equal(pool(x)[0, 0, 0], expected)
    assert torch.equal(expected, torch.tensor([[11., 12], [15, 16]]))


def test_separable_conv_is_spatial_then_temporal():
    conv = STConv3D(2, 4, (3, 3, 3), padding=1, separable=True)
    assert conv.conv1.kernel_size == (1, 3, 3) and conv.conv1.padding == (0, 1, 1)
    assert conv.conv2.kernel_size == (3, 1, 1) and conv.conv2.padding == (1, 0, 0)
    conv.eval()
    x = torch.rand(1, 2, 4, 5, 5)
    bn = lambda module, y: (y - module.running_mean[None, :, None, None, None]) / torch.sqrt(  # noqa: E731
        module.running_var[None, :, None, None, None] + module.eps) * module.weight[None, :, None, None, None] + \
        module.bias[None, :, None, None, None]
    step1 = torch.relu(bn(conv.bn1, torch.nn.functional.conv3d(x, conv.conv1.weight, padding=(0, 1, 1))))
    step2 = torch.relu(bn(conv.bn2, torch.nn.functional.conv3d(step1, conv.conv2.weight, padding=(1, 0, 0))))
    assert torch.allclose(conv(x), step2, atol=1e-6)


def test_forward_at_224_gives_both_outputs_from_a_4x7x7_grid(model):
    grids = []
    hook = model.mixed_5c.register_forward_hook(lambda module, inp, out: grids.append(tuple(out.shape)))
    try:
        with torch.inference_mode():
            out = model(torch.rand(1, 3, 30, 224, 224))
    finally:
        hook.remove()
    assert grids == [(1, 1024, 4, 7, 7)]
    assert out["video_embedding"].shape == (1, 512)
    assert out["mixed_5c"].shape == (1, 1024)
    with torch.inference_mode():
        expected = out["mixed_5c"] @ model.fc.weight.T + model.fc.bias
    assert torch.allclose(out["video_embedding"], expected, atol=1e-5)


def test_batch_items_are_independent_in_eval_mode(model):
    clips = torch.rand(3, 3, 30, 32, 32)
    with torch.inference_mode():
        batched = model(clips)["video_embedding"]
        single = torch.cat([model(clips[i:i + 1])["video_embedding"] for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_forward_rejects_wrong_shapes(model):
    with pytest.raises(ValueError, match=r"S3D expects clips \[B, 3, T, H, W\].*got shape \(1, 30, 3, 32, 32\)"):
        model(torch.rand(1, 30, 3, 32, 32))
    with pytest.raises(ValueError, match=r"needs even T, H and W, got \(29, 32, 32\)"):
        model(torch.rand(1, 3, 29, 32, 32))


def test_text_module_uses_the_word_dictionary(tmp_path):
    words = tmp_path / "s3d_dict.npy"
    np.save(words, np.array(["crack", "eggs", "bowl"], dtype=object), allow_pickle=True)
    net = S3D(str(words))
    ids = net.text_module._words_to_ids(["Crack the EGGS, bowl eggs"])
    assert ids.tolist() == [[1, 2, 3, 2] + [0] * 12]
    assert net.text_module(["eggs"])["text_embedding"].shape == (1, 512)
    with pytest.raises(RuntimeError, match=r"built without a word dictionary \(dict_path=None\)"):
        S3D(None).text_module(["eggs"])
    with pytest.raises(FileNotFoundError, match=r"S3D word dictionary not found: .*missing\.npy"):
        S3D(str(tmp_path / "missing.npy"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_forward_matches_cpu(tmp_path, layout):
    from tempclr.processors.models.s3dg import s3d_embed

    path = tmp_path / "s3d.pth"
    torch.save(release_like_state(layout), path)
    cpu, cuda = load_s3d(str(path)), load_s3d(str(path), device="cuda")
    assert next(cuda.parameters()).is_cuda and not cuda.training
    clips = torch.randint(0, 256, (2, 30, 64, 64, 3), dtype=torch.uint8)
    allow = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        got = s3d_embed(cuda, clips)
    finally:
        torch.backends.cudnn.allow_tf32 = allow
    assert got.is_cuda
    torch.testing.assert_close(got.cpu(), s3d_embed(cpu, clips), atol=1e-4, rtol=1e-4)
