"""How a shard's frames are stored: size, write time and read time of HDF5 codecs and chunk shapes.

Each setting stores one image array of a shard (``images``, or ``--column extra/frame_pool``...) anew in a
temporary file with h5py, then reads it back one story at a time in random order, as a shuffled training batch
does, and checks that every story comes back unchanged. Read times are the best of ``--repeat`` rounds, the
settings taking turns in each round so that a busy neighbour slows them alike. The first row is svkit's own
storage (``Column.storage``). Where ``hdf5plugin`` is installed (``pip install hdf5plugin``; svkit does not
need it), codecs that HDF5 reads only through a plugin are measured too: they could be an option at most, never
the default, since a shard must open wherever HDF5 does. Last, for scale, the frames' size as lossless WebP, each
frame alone (an image codec, not an HDF5 storage), and the share of pixels equal to the previous frame's.

    python benchmarks/shard_storage.py SHARD [--column images] [--stories 500] [--repeat 3]
"""
from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from sv_data.shards import ShardError, ShardReader


def settings(story: tuple[int, ...], ours: dict) -> dict[str, dict]:
    """Setting -> h5py's ``create_dataset`` arguments for it, svkit's own first. ``story`` is one story's shape.
    Shuffle is left out: it regroups the bytes of multi-byte values, and frames are single bytes."""
    def gzip(level):
        return {"compression": "gzip", "compression_opts": level}

    return {
        "svkit's": ours,
        "LZF, a story per chunk (svkit before)": {"chunks": (1, *story), "compression": "lzf"},
        **{f"gzip {level}, a story per chunk": {"chunks": (1, *story), **gzip(level)} for level in (1, 4, 6, 9)},
        "gzip 6, a frame per chunk": {"chunks": (1, 1, *story[1:]), **gzip(6)},
        "gzip 6, a colour plane per chunk": {"chunks": (1, *story[:-1], 1), **gzip(6)},
        "gzip 6, 4 stories per chunk": {"chunks": (4, *story), **gzip(6)},
        **plugin_settings(story),
    }


def plugin_settings(story: tuple[int, ...]) -> dict[str, dict]:
    """Codecs that HDF5 reads only through a plugin, a story per chunk; none where hdf5plugin is missing."""
    try:
        import hdf5plugin
    except ImportError:
        return {}
    codecs = {
        "Zstandard 10 (plugin)": hdf5plugin.Zstd(clevel=10),
        "Zstandard 19 (plugin)": hdf5plugin.Zstd(clevel=19),
        "LZ4 (plugin)": hdf5plugin.LZ4(),
        "Blosc, Zstandard 9, no shuffle (plugin)": hdf5plugin.Blosc(cname="zstd", clevel=9,
                                                                     shuffle=hdf5plugin.Blosc.NOSHUFFLE),
    }
    return {name: {"chunks": (1, *story), **codec} for name, codec in codecs.items()}


def webp_bytes(frames: np.ndarray) -> int:
    """Bytes of ``frames`` (..., H, W, 3) as lossless WebP, each frame alone."""
    total = 0
    for frame in frames.reshape(-1, *frames.shape[-3:]):
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, "WEBP", lossless=True, quality=100, method=6)
        total += buffer.tell()
    return total


def store(path: Path, frames: np.ndarray, storage: dict) -> tuple[float, int]:
    """Write ``frames`` as one dataset of a new file: the seconds it took (closing the file included) and the
    bytes its chunks take."""
    began = time.perf_counter()
    with h5py.File(path, "w") as f:
        f.create_dataset("frames", data=frames, **storage)
    seconds = time.perf_counter() - began
    with h5py.File(path, "r") as f:
        return seconds, f["frames"].id.get_storage_size()


def read_each_story(path: Path, order: np.ndarray, expected: np.ndarray) -> float:
    """Seconds to read every story once, one read each, in ``order``; the stories are checked after the clock."""
    with h5py.File(path, "r") as f:
        ds = f["frames"]
        stories = np.empty((len(order), *ds.shape[1:]), ds.dtype)
        began = time.perf_counter()
        for j, i in enumerate(order):
            ds.read_direct(stories, np.s_[i : i + 1], np.s_[j : j + 1])
        seconds = time.perf_counter() - began
    if not np.array_equal(stories, expected[order]):
        raise SystemExit(f"{path}: the frames read back differ from those written")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shard", type=Path)
    parser.add_argument("--column", default="images", help="the shard's image array to store: images, extra/NAME")
    parser.add_argument("--stories", type=int, default=500, help="the first this many stories are used")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    try:
        with ShardReader(args.shard) as reader:
            columns = {column.name: column for column in reader.info.spec.columns() if column.compress}
            if args.column not in columns:
                raise SystemExit(f"error: {args.shard}: no image array {args.column} (it has {', '.join(columns)})")
            n = min(args.stories, len(reader))
            frames = reader.read(args.column, range(n))
            ours = columns[args.column].storage(reader.info.spec)
    except ShardError as exc:
        raise SystemExit(f"error: {exc}") from None
    storages = settings(frames.shape[1:], ours)
    print(f"{args.shard}: {args.column} of {n} stories, {frames.shape[1:]} each ({frames[0].nbytes / 1e3:.1f} KB "
          f"raw); svkit's storage: {ours}")
    order = np.random.default_rng(0).permutation(n)
    stored, read = {}, {name: float("inf") for name in storages}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: Path(tmp) / f"{k}.h5" for k, name in enumerate(storages)}
        for name, storage in storages.items():
            stored[name] = store(paths[name], frames, storage)
        for _ in range(args.repeat):
            for name in storages:
                read[name] = min(read[name], read_each_story(paths[name], order, frames))
    print("| setting | KB a story | of raw | write ms a story | read ms a story |")
    print("| --- | --- | --- | --- | --- |")
    for name, (seconds, size) in stored.items():
        print(f"| {name} | {size / n / 1e3:.2f} | {size / frames.nbytes:.1%} | {seconds / n * 1e3:.3f} | "
              f"{read[name] / n * 1e3:.3f} |")
    if frames.ndim == 5 and frames.shape[-1] == 3:  # stories of RGB frames
        print(f"for scale: lossless WebP, each frame alone, {webp_bytes(frames) / n / 1e3:.2f} KB a story; "
              f"{(frames[:, 1:] == frames[:, :-1]).all(-1).mean():.1%} of the pixels equal the previous frame's")


if __name__ == "__main__":
    main()
