"""Scores that compare what an evaluator saw in a frame with what the story asked for.

Pure bookkeeping (no torch): tallies are summed over frames and stories and turned into rates at the end, so that
every rate is micro-averaged over the whole test set, as DuCo-StoryGAN and its successors averaged theirs.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np

ObjectKey = tuple[int, int, int, int]  # (shape, colour, material, size) as indices into the CLEVR vocabularies
ObjectSet = Counter  # Counter[ObjectKey]: a multiset, since a scene may hold two objects that look alike


def _ratio(numerator: int, denominator: int) -> float:
    """A rate, or 1.0 when nothing was there to get wrong (e.g. precision of a model that predicted nothing
    on frames that had nothing)."""
    return numerator / denominator if denominator else 1.0


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


@dataclass
class ObjectSetTally:
    """Counts behind the CLEVR-SV attribute scores, added up story by story."""

    frames: int = 0
    predicted_objects: int = 0
    actual_objects: int = 0
    matched_objects: int = 0  # size of the multiset intersection of predicted and actual objects
    exact_frames: int = 0  # predicted multiset == actual multiset
    right_count_frames: int = 0
    frame_pairs: int = 0  # (t-1, t) pairs within stories
    consistent_pairs: int = 0  # every object predicted in t-1 is predicted in t too

    def add_story(self, predicted: Sequence[ObjectSet], actual: Sequence[ObjectSet]) -> None:
        if len(predicted) != len(actual):
            raise ValueError(f"{len(predicted)} predicted frames for a story of {len(actual)}")
        for seen, wanted in zip(predicted, actual):
            self.frames += 1
            self.predicted_objects += sum(seen.values())
            self.actual_objects += sum(wanted.values())
            self.matched_objects += sum((seen & wanted).values())
            self.exact_frames += seen == wanted
            self.right_count_frames += sum(seen.values()) == sum(wanted.values())
        for before, after in zip(predicted, predicted[1:]):
            self.frame_pairs += 1
            self.consistent_pairs += not (before - after)

    def __iadd__(self, other: "ObjectSetTally") -> "ObjectSetTally":
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def scores(self) -> dict[str, float]:
        precision = _ratio(self.matched_objects, self.predicted_objects)
        recall = _ratio(self.matched_objects, self.actual_objects)
        return {
            "object_precision": precision,
            "object_recall": recall,
            "object_f1": _f1(precision, recall),
            "exact_match_accuracy": _ratio(self.exact_frames, self.frames),
            "object_count_accuracy": _ratio(self.right_count_frames, self.frames),
            "consistency": _ratio(self.consistent_pairs, self.frame_pairs),
        }


@dataclass
class MultiLabelTally:
    """Counts behind character F1 (micro) and frame accuracy (all labels of a frame right), DuCo-StoryGAN's two
    character scores."""

    frames: int = 0
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    exact_frames: int = 0

    def add(self, predicted: np.ndarray, actual: np.ndarray) -> None:
        """predicted, actual: 0/1 arrays (..., L)."""
        predicted = np.asarray(predicted, dtype=bool).reshape(-1, np.shape(predicted)[-1])
        actual = np.asarray(actual, dtype=bool).reshape(-1, np.shape(actual)[-1])
        if predicted.shape != actual.shape:
            raise ValueError(f"predicted labels {predicted.shape} vs actual {actual.shape}")
        self.frames += len(actual)
        self.true_positives += int((predicted & actual).sum())
        self.false_positives += int((predicted & ~actual).sum())
        self.false_negatives += int((~predicted & actual).sum())
        self.exact_frames += int((predicted == actual).all(axis=1).sum())

    def __iadd__(self, other: "MultiLabelTally") -> "MultiLabelTally":
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def scores(self) -> dict[str, float]:
        precision = _ratio(self.true_positives, self.true_positives + self.false_positives)
        recall = _ratio(self.true_positives, self.true_positives + self.false_negatives)
        return {
            "character_precision": precision,
            "character_recall": recall,
            "character_f1": _f1(precision, recall),
            "frame_accuracy": _ratio(self.exact_frames, self.frames),
        }


def mean_and_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n-1) over noise draws; no spread from a single draw."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), (float(array.std(ddof=1)) if len(array) > 1 else None)
