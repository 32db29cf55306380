"""Plain-Python oracles of the original soft-DTW / OTAM recurrences (cell by cell, float64), shared by the task tests."""
import math


def soft_min(values, gamma):
    low = min(values)
    return low - gamma * math.log(sum(math.exp(-(v - low) / gamma) for v in values))


def soft_dtw_plain(D, gamma):
    """Soft DTW with hard boundary sums: R[L-1][M-1]."""
    L, M = len(D), len(D[0])
    R = [[0.0] * M for _ in range(L)]
    for i in range(L):
        for j in range(M):
            if i == 0 and j == 0:
                R[i][j] = D[0][0]
            elif i == 0:
                R[i][j] = D[i][j] + R[i][j - 1]
            elif j == 0:
                R[i][j] = D[i][j] + R[i - 1][j]
            else:
                R[i][j] = D[i][j] + soft_min([R[i - 1][j - 1], R[i][j - 1], R[i - 1][j]], gamma)
    return R[L - 1][M - 1]


def soft_otam_plain(D, gamma):
    """Soft OTAM, one direction, zero side columns: R[L-1][M+1]."""
    L, M = len(D), len(D[0])
    P = [[0.0] + list(row) + [0.0] for row in D]
    R = [[0.0] * (M + 2) for _ in range(L)]
    for j in range(1, M + 2):
        R[0][j] = P[0][j] + R[0][j - 1]
    for i in range(1, L):
        R[i][1] = P[i][1] + soft_min([R[i - 1][0], R[i - 1][1], R[i][0]], gamma)
        for j in range(2, M + 1):
            R[i][j] = P[i][j] + soft_min([R[i - 1][j - 1], R[i][j - 1]], gamma)
        R[i][M + 1] = P[i][M + 1] + soft_min([R[i - 1][M], R[i - 1][M + 1], R[i][M]], gamma)
    return R[L - 1][M + 1]
