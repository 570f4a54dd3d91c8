"""Stories (windows of consecutive clips of one episode) and their splits by episode."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from sv_data.errors import SvkitError
from sv_data.shards import SPLITS


@dataclass(frozen=True)
class Window:
    """One story: ``clips`` are indices into the build's clip list, in the episode's order."""

    episode: str
    clips: tuple[int, ...]


def story_windows(
    episodes: Mapping[str, Sequence[int]], usable: Sequence[bool], length: int, stride: int
) -> tuple[list[Window], int]:
    """Every window of ``length`` consecutive clips, starting every ``stride`` clips of each episode, and how many
    windows were left out because they hold an unusable clip (the windows are laid over all of an episode's clips,
    so that leaving a clip out never joins the clips on either side of it into one story)."""
    if length < 1 or stride < 1:
        raise SvkitError(f"frames per story ({length}) and stride ({stride}) must be >= 1")
    windows, dropped = [], 0
    for episode, clips in episodes.items():
        for first in range(0, len(clips) - length + 1, stride):
            members = tuple(clips[first:first + length])
            if all(usable[c] for c in members):
                windows.append(Window(episode, members))
            else:
                dropped += 1
    return windows, dropped


def parse_split(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> fractions of episodes for train, val, test."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or any(not math.isfinite(v) or v < 0 for v in values):
        raise SvkitError(f"--split {text!r}: give three fractions >= 0 for train, val and test, e.g. 0.8,0.1,0.1")
    if abs(sum(values) - 1) > 1e-6:
        raise SvkitError(f"--split {text!r}: the fractions add up to {sum(values):g}, not 1")
    if values[0] == 0:
        raise SvkitError(f"--split {text!r}: the train fraction must be > 0")
    return values  # type: ignore[return-value]


def episode_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Episodes per split: the largest-remainder rounding of ``n * fractions``, then at least one episode for every
    split with a fraction > 0 as long as there are enough episodes."""
    quotas = [f * n for f in fractions]
    counts = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    for i, fraction in enumerate(fractions):
        donor = max(range(len(counts)), key=lambda j: counts[j])
        if fraction > 0 and counts[i] == 0 and counts[donor] > 1:
            counts[donor] -= 1
            counts[i] += 1
    return counts


@dataclass(frozen=True)
class SplitResult:
    assignment: dict[str, str]  # episode -> split name
    frequencies: dict[str, np.ndarray]  # split -> fraction of its frames showing each label
    imbalance: float  # the largest difference of one label's frequency between two splits
    worst_label: int  # the label with that difference
    draws: int  # random draws tried
    balanced: bool  # imbalance <= the tolerance


def split_episodes(
    episodes: Sequence[str],
    label_sums: np.ndarray,
    frame_counts: np.ndarray,
    fractions: Sequence[float],
    seed: int,
    tolerance: float,
    max_draws: int = 50,
) -> SplitResult:
    """Assign whole episodes to train/val/test so that every label's frame frequency agrees between the splits
    within ``tolerance`` (DuCo's rule).

    ``label_sums[e]`` counts, per label, the frames of episode e's stories that show it; ``frame_counts[e]`` is
    its number of story frames. A draw is a seeded random assignment with the split sizes of
    :func:`episode_counts`, improved by swapping pairs of episodes between splits while that lowers the imbalance.
    Draws are repeated (seeds ``[seed, 0]``, ``[seed, 1]``, ...) until one is within the tolerance; otherwise
    the best one is returned with ``balanced=False``.
    """
    n = len(episodes)
    label_sums = np.asarray(label_sums, dtype=np.float64).reshape(n, -1)
    frame_counts = np.asarray(frame_counts, dtype=np.float64)
    if n == 0:
        raise SvkitError("no episode has a story to split")
    counts = episode_counts(n, fractions)
    best: tuple[float, np.ndarray] | None = None
    draws = 0
    for draw in range(max_draws):
        draws += 1
        order = np.random.default_rng([seed, draw]).permutation(n)
        assignment = np.repeat(np.arange(len(counts)), counts)[np.argsort(order)]
        assignment, imbalance = _descend(assignment, label_sums, frame_counts)
        if best is None or imbalance < best[0]:
            best = (imbalance, assignment)
        if imbalance <= tolerance:
            break
    imbalance, assignment = best
    frequencies = _frequencies(assignment, label_sums, frame_counts, len(counts))
    present = [s for s in range(len(counts)) if counts[s]]
    spread = np.ptp(frequencies[present], axis=0) if label_sums.shape[1] else np.zeros(1)
    return SplitResult(
        assignment={e: SPLITS[s] for e, s in zip(episodes, assignment)},
        frequencies={SPLITS[s]: frequencies[s] for s in present},
        imbalance=float(imbalance),
        worst_label=int(np.argmax(spread)),
        draws=draws,
        balanced=imbalance <= tolerance,
    )


def _frequencies(assignment: np.ndarray, label_sums: np.ndarray, frame_counts: np.ndarray, splits: int) -> np.ndarray:
    sums = np.stack([label_sums[assignment == s].sum(axis=0) for s in range(splits)])
    frames = np.array([frame_counts[assignment == s].sum() for s in range(splits)])
    return sums / np.maximum(frames, 1)[:, None]


def _imbalance(frequencies: np.ndarray) -> np.ndarray:
    """Largest spread of a label's frequency over the splits; ``frequencies`` is (..., splits, labels)."""
    if frequencies.shape[-1] == 0 or frequencies.shape[-2] < 2:
        return np.zeros(frequencies.shape[:-2])
    return np.ptp(frequencies, axis=-2).max(axis=-1)


def _descend(assignment: np.ndarray, label_sums: np.ndarray, frame_counts: np.ndarray) -> tuple[np.ndarray, float]:
    """Swap the pair of episodes (from two different splits) that lowers the imbalance most, until none does."""
    assignment = assignment.copy()
    splits = int(assignment.max()) + 1
    present = [s for s in range(splits) if (assignment == s).any()]
    sums = np.stack([label_sums[assignment == s].sum(axis=0) for s in present])
    frames = np.array([frame_counts[assignment == s].sum() for s in present])
    current = float(_imbalance(sums / frames[:, None]))
    for _ in range(4 * len(assignment)):
        best = (current, None)
        for a in range(len(present)):
            for b in range(a + 1, len(present)):
                members_a = np.flatnonzero(assignment == present[a])
                members_b = np.flatnonzero(assignment == present[b])
                delta = label_sums[members_b][None, :, :] - label_sums[members_a][:, None, :]  # (na, nb, L)
                frame_delta = frame_counts[members_b][None, :] - frame_counts[members_a][:, None]
                new_sums = np.broadcast_to(sums, (*delta.shape[:2], *sums.shape)).copy()
                new_frames = np.broadcast_to(frames, (*delta.shape[:2], len(frames))).copy()
                new_sums[:, :, a] += delta
                new_sums[:, :, b] -= delta
                new_frames[:, :, a] += frame_delta
                new_frames[:, :, b] -= frame_delta
                scores = _imbalance(new_sums / new_frames[..., None])
                i, j = np.unravel_index(np.argmin(scores), scores.shape)
                if scores[i, j] < best[0] - 1e-12:
                    best = (float(scores[i, j]), (a, b, members_a[i], members_b[j]))
        if best[1] is None:
            break
        a, b, i, j = best[1]
        assignment[i], assignment[j] = present[b], present[a]
        moved = label_sums[j] - label_sums[i]
        sums[a] += moved
        sums[b] -= moved
        frames[a] += frame_counts[j] - frame_counts[i]
        frames[b] -= frame_counts[j] - frame_counts[i]
        current = best[0]
    return assignment, current
