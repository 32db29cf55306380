"""The Triton kernels agree with the numba CPU kernels, both GPU schedules (one program per problem; waves of
tiles for a few large grids): under triton's interpreter (TRITON_INTERPRET=1, CPU tensors, small shapes, run in a
subprocess because the variable must be set before triton is imported) and, when a GPU is present, on CUDA
tensors (large grids too)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

HAS_TRITON = importlib.util.find_spec("triton") is not None

COMPARE_SCRIPT = textwrap.dedent(
    """
    import torch
    from tempclr.modules.alignment import cumulative_cost, hard_otam, soft_dtw, soft_otam

    def score(D, gamma, mode, lengths, backend, schedule=None):
        if mode == "dtw":
            return soft_dtw(D, gamma, lengths, backend=backend, schedule=schedule)
        return soft_otam(D, gamma, lengths, bidirectional=(mode == "otam_both"), backend=backend, schedule=schedule)

    gen = torch.Generator().manual_seed(0)
    checked = 0
    for dtype, tol, shapes, with_lengths in [
        (torch.float64, 1e-10, [(5, 5), (3, 7)], [False, True]),
        (torch.float32, 2e-5, [(6, 2)], [True]),
    ]:
        for (L, M) in shapes:
            D = (torch.rand(3, L, M, generator=gen) * 2 - 0.5).to(dtype)
            lengths = torch.stack([torch.randint(1, L + 1, (3,), generator=gen),
                                   torch.randint(1, M + 1, (3,), generator=gen)], -1)
            for mode in ["dtw", "otam", "otam_both"]:
                for lens in [lengths if use else None for use in with_lengths]:
                    results = {}
                    for backend in ["triton", "cpu"]:
                        X = D.clone().requires_grad_(True)
                        out = score(X, 0.3, mode, lens, backend)
                        (out * torch.arange(1, 4, dtype=dtype)).sum().backward()
                        results[backend] = (out.detach(), X.grad)
                    for what, a, b in [("value", results["triton"][0], results["cpu"][0]),
                                       ("gradient", results["triton"][1], results["cpu"][1])]:
                        err = (a - b).abs().max().item()
                        assert err <= tol, f"{dtype} {L}x{M} {mode} lengths={lens is not None} {what}: {err}"
                    checked += 1
        for prepadded in [False, True]:
            a = cumulative_cost(D, "otam", 0.0, prepadded=prepadded, backend="triton")
            b = cumulative_cost(D, "otam", 0.0, prepadded=prepadded, backend="cpu")
            assert torch.allclose(a, b, rtol=tol, atol=tol), f"matrix prepadded={prepadded}"
        assert torch.allclose(hard_otam(D, lengths, backend="triton"), hard_otam(D, lengths, backend="cpu"))
    # rows longer than one BLOCK: each anti-diagonal is processed in several row chunks
    import tempclr.modules.alignment.triton_kernels as tk
    tk._block = lambda rows: 16
    D = torch.rand(2, 37, 3, generator=gen, dtype=torch.float64)
    for mode in ["dtw", "otam_both"]:
        X = {b: D.clone().requires_grad_(True) for b in ["triton", "cpu"]}
        out = {b: score(X[b], 0.5, mode, None, b) for b in X}
        for b in X:
            out[b].sum().backward()
        assert torch.allclose(out["triton"], out["cpu"], rtol=1e-10, atol=1e-10), f"chunked rows {mode}"
        assert torch.allclose(X["triton"].grad, X["cpu"].grad, rtol=1e-10, atol=1e-10), f"chunked rows {mode}"
        checked += 1
    # the waves of tiles (several programs per grid, one launch per anti-diagonal of tiles), forced, with tiles
    # of 4 cells a side: grids of 2-3 tiles a side, partial tiles, tiles outside an item's lengths
    from tempclr.modules.alignment.grid import passes_for
    tk.TILE = 4
    waves = {"triton": "waves", "cpu": None}
    for (B, L, M) in [(2, 9, 6), (1, 5, 11)]:
        D = torch.rand(B, L, M, generator=gen, dtype=torch.float64)
        lengths = torch.stack([torch.randint(1, L + 1, (B,), generator=gen),
                               torch.randint(1, M + 1, (B,), generator=gen)], -1)
        for mode in ["dtw", "otam", "otam_both"]:
            for lens in [None, lengths]:
                X = {b: D.clone().requires_grad_(True) for b in ["triton", "cpu"]}
                out = {b: score(X[b], 0.3, mode, lens, b, waves[b]) for b in X}
                for b in X:
                    (out[b] * torch.arange(1, B + 1, dtype=D.dtype)).sum().backward()
                for what, a, b in [("value", out["triton"], out["cpu"]), ("gradient", X["triton"].grad, X["cpu"].grad)]:
                    err = (a.detach() - b.detach()).abs().max().item()
                    assert err <= 1e-10, f"waves {B}x{L}x{M} {mode} lengths={lens is not None} {what}: {err}"
                checked += 1
        # cumulative_cost and hard_otam through the waves: the kernel entry points, schedule forced
        (otam_pass,) = passes_for("otam")
        a = tk.triton_matrix(tk.triton_scores(D, None, 0.3, otam_pass, schedule="waves")[1], B)
        assert torch.allclose(a, cumulative_cost(D, "otam", 0.3, backend="cpu"), rtol=1e-10, atol=1e-10), "waves R"
        hard = tk.triton_scores(D, lengths, 1.0, otam_pass, hard=True, schedule="waves")[0]
        assert torch.equal(hard, hard_otam(D, lengths, backend="cpu")), "waves hard"
    print("checked", checked)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install triton, the project's triton extra)")
def test_triton_kernels_match_cpu_under_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, "-c", COMPARE_SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    assert "checked 29" in proc.stdout, proc.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.parametrize("schedule", ["problems", "waves"])
def test_triton_schedules_match_cpu_on_gpu(schedule):
    """Both GPU schedules (one program per problem; waves of tiles) against the CPU kernels, on grids of many
    tiles, square and very non-square, with lengths."""
    from tempclr.modules.alignment import expected_alignment, soft_dtw, soft_otam

    gen = torch.Generator().manual_seed(2)
    for shape in [(2, 300, 200), (1, 1000, 70), (3, 130, 129)]:
        B, L, M = shape
        D = torch.rand(shape, generator=gen)
        lengths = torch.stack([torch.randint(1, L + 1, (B,), generator=gen),
                               torch.randint(1, M + 1, (B,), generator=gen)], -1)
        lengths[0] = torch.tensor([L, M])
        for lens in (None, lengths):
            for fn in [soft_dtw, lambda *a, **k: soft_otam(*a, bidirectional=True, **k)]:
                gpu = fn(D.to("cuda"), 0.1, None if lens is None else lens.to("cuda"), schedule=schedule)
                cpu = fn(D, 0.1, lens)
                assert torch.allclose(gpu.cpu(), cpu, rtol=1e-4, atol=1e-3), (shape, (gpu.cpu() - cpu).abs().max())
            for mode in ["dtw", "otam_both"]:
                a = expected_alignment(D.to("cuda"), 0.1, mode, None if lens is None else lens.to("cuda"),
                                       schedule=schedule).cpu()
                b = expected_alignment(D, 0.1, mode, lens)
                assert torch.allclose(a, b, rtol=1e-3, atol=1e-3), (shape, mode, (a - b).abs().max())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_triton_kernels_match_cpu_on_gpu():
    from tempclr.modules.alignment import expected_alignment, soft_dtw, soft_otam

    gen = torch.Generator().manual_seed(1)
    D = torch.rand(4, 64, 33, 47, generator=gen)
    rows = torch.randint(1, 34, (4, 64), generator=gen)
    lengths = torch.stack([rows, torch.randint(1, 48, (4, 64), generator=gen)], -1)
    for fn in [soft_dtw, lambda *a, **k: soft_otam(*a, bidirectional=True, **k)]:
        gpu = fn(D.to("cuda"), 0.1, lengths.to("cuda"))
        cpu = fn(D, 0.1, lengths)
        assert torch.allclose(gpu.cpu(), cpu, rtol=1e-5, atol=1e-4), (gpu.cpu() - cpu).abs().max()
    for mode in ["dtw", "otam_both"]:
        a = expected_alignment(D.to("cuda"), 0.1, mode, lengths.to("cuda")).cpu()
        b = expected_alignment(D, 0.1, mode, lengths)
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (a - b).abs().max()
