"""Small synthetic shards for the format's own tests (the builders' tests use real data)."""
from pathlib import Path

import numpy as np

from sv_data.shards import ExtraSpec, ShardSpec, ShardWriter, StoryBatch

LABELS = ("red", "green", "blue")


def synthetic_spec(split="train", frames=4, size=(16, 16), condition_dim=6) -> ShardSpec:
    return ShardSpec(
        dataset="synthetic",
        split=split,
        frames_per_story=frames,
        image_size=size,
        label_names=LABELS,
        condition_dim=condition_dim,
        build_config={"seed": 0, "maker": "tests"},
        extras={"frame_number": ExtraSpec((frames,), "int32", "index of each frame within its story")},
    )


def synthetic_batch(spec: ShardSpec, start: int, stop: int, seed: int = 0) -> StoryBatch:
    """Stories start..stop-1; story i depends only on (seed, i)."""
    n, t, (h, w) = stop - start, spec.frames_per_story, spec.image_size
    images = np.empty((n, t, h, w, 3), np.uint8)
    labels = np.zeros((n, t, len(spec.label_names)), np.uint8)
    conditions = np.empty((n, t, spec.condition_dim), np.float32)
    for j, i in enumerate(range(start, stop)):
        rng = np.random.default_rng([seed, i])
        images[j] = rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
        labels[j] = rng.integers(0, 2, (t, len(spec.label_names)))
        conditions[j] = rng.standard_normal((t, spec.condition_dim))
    return StoryBatch(
        images=images,
        texts=[[f"story {i} frame {k}" for k in range(t)] for i in range(start, stop)],
        story_ids=[f"{spec.split}-{i:05d}" for i in range(start, stop)],
        labels=labels,
        conditions=conditions,
        extra={"frame_number": np.tile(np.arange(t, dtype=np.int32), (n, 1))},
    )


def write_shard(path: Path, stories: int = 10, **spec_options) -> Path:
    spec = synthetic_spec(**spec_options)
    with ShardWriter(path, spec) as writer:
        writer.append(synthetic_batch(spec, 0, stories))
    return path


class SyntheticJob:
    """A StoryJob over synthetic stories; ``fail_at`` makes it crash on that story index, like a killed build."""

    def __init__(self, seed: int = 0, fail_at: int | None = None):
        self.seed = seed
        self.fail_at = fail_at

    def spec(self, split):
        return synthetic_spec(split=split)

    def config(self):
        return {"seed": self.seed}

    def setup(self):
        pass

    def stories(self, split, start, stop):
        for i in range(start, stop):
            if i == self.fail_at:
                raise RuntimeError(f"simulated crash at story {i}")
            yield synthetic_batch(self.spec(split), i, i + 1, self.seed)
