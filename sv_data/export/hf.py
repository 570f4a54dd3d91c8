"""``--to hf``: Parquet files for Hugging Face ``datasets``, one row per story, and a ``README.md`` dataset card.

``data/<split>-<k>-of-<n>.parquet`` hold the columns story_id, images (the T frames as PNG files), texts, labels
(T x L zeros and ones) and conditions (T x D float32). The schema carries the ``datasets`` feature metadata, so
``load_dataset("parquet", ...)`` (or ``load_dataset(OUT)``, through the card's ``configs``) decodes the frames
as images, not bytes. Written with pyarrow alone: ``datasets`` is not needed to export.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from sv_data.errors import SvkitError
from sv_data.export.common import BLOCK, ExportSummary, export_folder, png_bytes, shards_in_split_order, split_sizes, \
    story_blocks
from sv_data.shards import ShardInfo, images_sha256, label_frequencies

STORIES_PER_FILE = 16 * BLOCK  # some tens of MB of 64x64 frames per file
FEATURES = {  # datasets' feature dict ("Sequence" is read by datasets 2.x to 5.x)
    "story_id": {"dtype": "string", "_type": "Value"},
    "images": {"feature": {"_type": "Image"}, "length": -1, "_type": "Sequence"},
    "texts": {"feature": {"dtype": "string", "_type": "Value"}, "length": -1, "_type": "Sequence"},
    "labels": {"feature": {"feature": {"dtype": "uint8", "_type": "Value"}, "length": -1, "_type": "Sequence"},
               "length": -1, "_type": "Sequence"},
    "conditions": {"feature": {"feature": {"dtype": "float32", "_type": "Value"}, "length": -1,
                               "_type": "Sequence"}, "length": -1, "_type": "Sequence"},
}


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise SvkitError("--to hf needs pyarrow: pip install 'pyarrow<26' (26 needs numpy 2)") from None
    return pyarrow, pyarrow.parquet


def schema():
    pa, _ = _pyarrow()
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    return pa.schema(
        [("story_id", pa.string()), ("images", pa.list_(image)), ("texts", pa.list_(pa.string())),
         ("labels", pa.list_(pa.list_(pa.uint8()))), ("conditions", pa.list_(pa.list_(pa.float32())))],
        metadata={"huggingface": json.dumps({"info": {"features": FEATURES}})},
    )


def _nested(values: np.ndarray):
    """An (n, T, D) array as list<list<...>> without a round trip through Python numbers."""
    pa, _ = _pyarrow()
    n, t, d = values.shape
    inner = pa.ListArray.from_arrays(pa.array(np.arange(0, n * t * d + 1, d, dtype=np.int32)),
                                     pa.array(values.reshape(-1)))
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * t + 1, t, dtype=np.int32)), inner)


def _table(block: dict[str, np.ndarray]):
    pa, _ = _pyarrow()
    images = [[{"bytes": png_bytes(frame), "path": None} for frame in story] for story in block["images"]]
    columns = [pa.array(block["story_ids"].astype(str).tolist(), pa.string()), pa.array(images),
               pa.array(block["texts"].astype(str).tolist()), _nested(block["labels"]), _nested(block["conditions"])]
    return pa.Table.from_arrays(columns, schema=schema())


def file_name(split: str, k: int, files: int) -> str:
    return f"{split}-{k:05d}-of-{files:05d}.parquet"


def export(paths: Sequence[os.PathLike | str], out: os.PathLike | str, progress: bool = True) -> ExportSummary:
    _, pq = _pyarrow()
    infos = shards_in_split_order(paths)
    with export_folder(out) as work:
        (work / "data").mkdir()
        writer, current = None, None
        for info, start, block in story_blocks(infos, ["story_ids", "images", "texts", "labels", "conditions"],
                                               progress):
            file = (info.spec.split, start // STORIES_PER_FILE)  # a block never straddles two files
            if file != current:
                if writer is not None:
                    writer.close()
                files = math.ceil(info.num_stories / STORIES_PER_FILE)
                writer, current = pq.ParquetWriter(work / "data" / file_name(file[0], file[1], files), schema()), file
            writer.write_table(_table(block))
        if writer is not None:
            writer.close()
        (work / "README.md").write_text(dataset_card(infos), encoding="utf-8")
    return ExportSummary(Path(out), split_sizes(infos),
                         f"python -c \"import datasets; print(datasets.load_dataset('{out}'))\"")


def dataset_card(infos: Sequence[ShardInfo]) -> str:
    spec = infos[0].spec
    height, width = spec.image_size
    header = ["---", "license: other", "configs:", "- config_name: default", "  data_files:"]
    header += [f"  - split: {info.spec.split}\n    path: data/{info.spec.split}-*" for info in infos if info.num_stories]
    header.append("---")
    counts = ["| split | stories | frames | SHA-256 of the frames' pixels |", "| --- | --- | --- | --- |"]
    counts += [f"| {i.spec.split} | {i.num_stories} | {i.num_stories * i.frames_per_story} | "
               f"`{images_sha256(i.path)}` |" for i in infos]
    frequencies = {info.spec.split: label_frequencies(info.path) for info in infos}
    labels = [f"| label | {' | '.join(frequencies)} |", "| --- |" + " --- |" * len(frequencies)]
    labels += [f"| {name} | " + " | ".join(f"{f[name]:.1%}" for f in frequencies.values()) + " |"
               for name in spec.label_names]
    builds = [f"- `{info.path.name}` ({info.spec.split}), written by {info.created_by}:\n\n```json\n"
              f"{json.dumps(info.spec.build_config, indent=2, sort_keys=True)}\n```" for info in infos]
    return "\n".join([
        *header, "",
        f"# {spec.dataset}",
        "",
        f"Story visualization data exported by svkit (`sv-data export --to hf`): stories of {spec.frames_per_story} "
        f"frames of {width}x{height} pixels, each frame with a text, {len(spec.label_names)} labels and a "
        f"{spec.condition_dim}-d condition ({spec.condition_kind}).",
        "",
        "```python",
        "import datasets",
        "stories = datasets.load_dataset(\"path/to/this/folder\")  # or \"parquet\", data_files=...",
        "stories[\"train\"][0][\"images\"]  # a list of PIL images, one per frame",
        "```",
        "",
        "## Columns",
        "",
        "- `story_id` (string); `images`: the frames, PNG; `texts`: one text per frame;",
        f"- `labels`: per frame, 0 or 1 for each of {', '.join(spec.label_names)};",
        f"- `conditions`: per frame, the {spec.condition_dim} float32 numbers the model is conditioned on.",
        "",
        "## Splits", "", *counts, "",
        "## Label frequencies (share of frames)", "", *labels, "",
        "## How it was built", "", *builds, "",
        "## Licence", "",
        "svkit itself is MIT-licensed. The frames and texts are derived from source material (videos, "
        "descriptions, 3D assets) whose terms belong to their owners: check them before you share or use this "
        "dataset.",
        "",
    ])
