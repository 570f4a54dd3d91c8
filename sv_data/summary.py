"""What ``sv-data inspect`` reports about a shard."""
from __future__ import annotations

import os

import numpy as np

from sv_data.shards import FORMAT_VERSION, ShardReader, iter_blocks, label_frequencies


def summarize(path: os.PathLike | str, block: int = 1024) -> dict:
    """Header, sizes, label frequencies and text-length statistics of a shard, as JSON-able values."""
    with ShardReader(path) as reader:
        info = reader.info
        words = []
        for start, stop in iter_blocks(len(reader), block):
            words += [len(text.split()) for row in reader.read("texts", range(start, stop)) for text in row]
    lengths = np.asarray(words or [0])
    return {
        "path": str(info.path),
        "format_version": FORMAT_VERSION,
        "created_by": info.created_by,
        "dataset": info.spec.dataset,
        "split": info.spec.split,
        "stories": info.num_stories,
        "frames_per_story": info.frames_per_story,
        "image_size": list(info.image_size),
        "condition_dim": info.spec.condition_dim,
        "label_frequencies": label_frequencies(path),
        "text_words": {
            "mean": float(lengths.mean()),
            "min": int(lengths.min()),
            "median": float(np.median(lengths)),
            "max": int(lengths.max()),
        },
        "extra": {name: {"shape": list(e.shape), "dtype": e.dtype, "description": e.description}
                  for name, e in info.spec.extras.items()},
        "story_range": list(info.story_range) if info.story_range else None,
        "build_config": dict(info.spec.build_config),
    }


def format_summary(summary: dict) -> str:
    """The summary as aligned, human-readable lines."""
    h, w = summary["image_size"]
    tw = summary["text_words"]
    lines = [
        f"file              {summary['path']}",
        f"format            sv-shard v{summary['format_version']} ({summary['created_by']})",
        f"dataset / split   {summary['dataset']} / {summary['split']}",
        f"stories           {summary['stories']} x {summary['frames_per_story']} frames of {h}x{w}",
        f"conditions        {summary['condition_dim']}-d per frame",
        f"text (words)      mean {tw['mean']:.1f}, min {tw['min']}, median {tw['median']:.0f}, max {tw['max']}",
        "labels (share of frames):",
    ]
    lines += [f"  {name:<16}{share:7.1%}" for name, share in summary["label_frequencies"].items()]
    if summary["extra"]:
        lines.append("extra/:")
        lines += [f"  {name:<16}{e['dtype']:<8}{str(tuple(e['shape'])):<18}{e['description']}"
                  for name, e in summary["extra"].items()]
    lines.append("build config:")
    lines += [f"  {key} = {value}" for key, value in summary["build_config"].items()]
    return "\n".join(lines)
