"""The alignment picture: a real PNG of the expected alignment over the distance matrix."""
import numpy as np
import pytest
import torch

from tempclr.modules.alignment import expected_alignment
from tempclr.utils.plots import plot_alignment


def test_alignment_png(tmp_path):
    distance = torch.rand(5, 6, dtype=torch.float64)
    alignment = expected_alignment(distance, 0.1, "dtw")
    assert torch.allclose(alignment[0, 0], torch.tensor(1.0, dtype=torch.float64))  # every path starts there
    path = plot_alignment(distance.numpy(), alignment.numpy(), [f"caption {i}" for i in range(5)],
                          [f"{i}-{i + 1}" for i in range(6)], str(tmp_path / "a.png"), "test")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 100 and np.ptp(image) > 0


def test_alignment_png_rejects_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match="same"):
        plot_alignment(np.zeros((3, 4)), np.zeros((4, 3)), ["a"] * 3, ["b"] * 4, str(tmp_path / "x.png"))
