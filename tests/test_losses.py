"""Losses against hand computations."""
import math

import numpy as np
import torch

from tempclr.losses import BCE, MMContraLoss


def log_softmax_rows(matrix):
    return [[x - math.log(sum(math.exp(y) for y in row)) for x in row] for row in matrix]


def test_mmcontraloss_is_sum_of_two_directions_by_hand():
    video = [[1.0, 0.0], [0.5, 2.0], [-1.0, 0.3]]
    text = [[0.2, 1.0], [1.5, -0.5], [0.0, 0.7]]
    dots = [[sum(a * b for a, b in zip(v, t)) for t in text] for v in video]  # raw dot products, no temperature
    v2t = -sum(log_softmax_rows(dots)[i][i] for i in range(3)) / 3
    t2v = -sum(log_softmax_rows([list(col) for col in zip(*dots)])[i][i] for i in range(3)) / 3
    loss = MMContraLoss()(pooled_video=torch.tensor(video, dtype=torch.float64),
                          pooled_text=torch.tensor(text, dtype=torch.float64))
    assert abs(loss.item() - (v2t + t2v)) < 1e-12


def test_mmcontraloss_gradient_by_hand():
    """d/dV of CE(V T^T) + CE(T V^T): (softmax(S) - I) T / n + (softmax(S^T) - I)^T T / n, and symmetrically for T,
    with S = V T^T (rows: videos)."""
    generator = torch.Generator().manual_seed(0)
    video = torch.randn(4, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    text = torch.randn(4, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    MMContraLoss()(pooled_video=video, pooled_text=text).backward()
    V, T = video.detach().numpy(), text.detach().numpy()
    S = V @ T.T
    n = len(S)

    def softmax_rows(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    G = (softmax_rows(S) - np.eye(n)) / n + (softmax_rows(S.T) - np.eye(n)).T / n   # dL/dS
    np.testing.assert_allclose(video.grad.numpy(), G @ T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(text.grad.numpy(), G.T @ V, rtol=1e-12, atol=1e-14)


def test_bce_mean_over_all_elements_by_hand():
    logits = np.array([[0.3, -1.2], [2.0, 0.1], [-0.4, 0.0]])
    targets = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    by_hand = -np.mean(targets * np.log(1 / (1 + np.exp(-logits))) + (1 - targets) * np.log(1 - 1 / (1 + np.exp(-logits))))
    loss = BCE()(logits=torch.tensor(logits), targets=torch.tensor(targets)[None])
    assert abs(loss.item() - by_hand) < 1e-12
