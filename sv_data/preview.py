"""Contact sheets: one row per story, each frame with its sentence under it."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sv_data.errors import require_at_least
from sv_data.files import atomic_path
from sv_data.shards import ShardReader

CELL = 192  # frames are scaled up to this width so that 64x64 data can be looked at
CAPTION_LINES = 5
LINE_HEIGHT = 12
PAD = 6


def choose_stories(num_stories: int, count: int, seed: int) -> np.ndarray:
    """``count`` distinct story indices drawn with ``seed`` (all of them, in order, when there are few)."""
    if count >= num_stories:
        return np.arange(num_stories)
    return np.sort(np.random.default_rng(seed).choice(num_stories, size=count, replace=False))


def contact_sheet(images: np.ndarray, texts: list[list[str]], story_ids: list[str]) -> Image.Image:
    """images uint8 (n, T, H, W, 3) with their sentences -> one RGB sheet."""
    n, t, h, w = images.shape[:4]
    cell_h = round(CELL * h / w)
    font = ImageFont.load_default()
    chars_per_line = max(8, CELL // 6)
    row_h = LINE_HEIGHT + cell_h + CAPTION_LINES * LINE_HEIGHT + 2 * PAD
    sheet = Image.new("RGB", (t * (CELL + PAD) + PAD, max(n, 1) * row_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        top = i * row_h + PAD
        draw.text((PAD, top), story_ids[i], fill=(90, 90, 90), font=font)
        for k in range(t):
            left = PAD + k * (CELL + PAD)
            frame = Image.fromarray(images[i, k]).resize((CELL, cell_h), Image.NEAREST)
            sheet.paste(frame, (left, top + LINE_HEIGHT))
            caption = textwrap.wrap(texts[i][k], chars_per_line)
            if len(caption) > CAPTION_LINES:
                caption = caption[: CAPTION_LINES - 1] + [caption[CAPTION_LINES - 1][: chars_per_line - 3] + "..."]
            for j, line in enumerate(caption):
                draw.text((left, top + LINE_HEIGHT + cell_h + 2 + j * LINE_HEIGHT), line, fill="black", font=font)
    return sheet


def write_preview(shard: os.PathLike | str, out: os.PathLike | str, stories: int = 8, seed: int = 0) -> Path:
    """Draw ``stories`` stories of a shard into a PNG at ``out`` (written atomically)."""
    require_at_least("--stories", stories, 1)
    with ShardReader(shard) as reader:
        rows = choose_stories(len(reader), stories, seed)
        batch = reader.read_stories(rows)
    with atomic_path(out) as tmp:
        contact_sheet(batch.images, batch.texts, batch.story_ids).save(tmp, format="PNG")
    return Path(out)
