"""The Fréchet distance between two sets of feature vectors, each summarised by its mean and covariance.

FID is this distance in the 2048-d pool features of the FID InceptionV3 (:mod:`.inception`); svkit's cheap variant
is the same distance in the feature space of its own evaluator. Statistics are accumulated in float64 as running
sums, so that features never need to be held in memory all at once.
"""
from __future__ import annotations

import numpy as np


class GaussianStats:
    """Running count, sum and sum of outer products of d-dimensional features."""

    def __init__(self, dim: int):
        self.count = 0
        self.total = np.zeros(dim, np.float64)
        self.outer = np.zeros((dim, dim), np.float64)

    def add(self, features: np.ndarray) -> None:
        features = np.asarray(features, np.float64).reshape(len(features), -1)
        if features.shape[1] != len(self.total):
            raise ValueError(f"features have {features.shape[1]} dimensions, expected {len(self.total)}")
        self.count += len(features)
        self.total += features.sum(axis=0)
        self.outer += features.T @ features

    def __add__(self, other: "GaussianStats") -> "GaussianStats":
        merged = GaussianStats(len(self.total))
        merged.count = self.count + other.count
        merged.total = self.total + other.total
        merged.outer = self.outer + other.outer
        return merged

    def mean(self) -> np.ndarray:
        return self.total / self.count

    def covariance(self) -> np.ndarray:
        """Unbiased (n - 1), as numpy.cov and pytorch-fid compute it."""
        mean = self.mean()
        return (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)


def _trace_sqrt_product(a: np.ndarray, b: np.ndarray) -> float:
    """Tr((A B)^(1/2)) for symmetric positive semi-definite A and B.

    A B is similar to A^(1/2) B A^(1/2), which is symmetric, so the trace is the sum of the square roots of that
    matrix's eigenvalues: two symmetric eigendecompositions, about ten times faster than scipy.linalg.sqrtm on a
    2048-d covariance, and defined without jitter when the covariances are singular (fewer samples than
    dimensions), where the tiny negative eigenvalues that rounding leaves are clipped to zero.
    """
    values, vectors = np.linalg.eigh(a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    inner = np.linalg.eigvalsh(root_a @ b @ root_a)
    return float(np.sqrt(np.clip(inner, 0, None)).sum())


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), as in FID (Heusel et al. 2017)."""
    if a.count < 2 or b.count < 2:
        raise ValueError(f"a Fréchet distance needs at least 2 samples per set, got {a.count} and {b.count}")
    mean_a, mean_b = a.mean(), b.mean()
    cov_a, cov_b = a.covariance(), b.covariance()
    distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * _trace_sqrt_product(cov_a, cov_b)
    return float(max(distance, 0.0))  # rounding can leave -1e-12 for identical sets
