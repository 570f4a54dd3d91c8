"""The CLEVR-SV StoryJob: sample a scene, render its four frames, describe them, pack a StoryBatch."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from sv_data.clevr import CHUNK_SIZE, DEFAULT_SAMPLES
from sv_data.clevr.descriptions import describe
from sv_data.clevr.scene import (
    COLOR_NAMES,
    CONDITION_DIM,
    LABEL_NAMES,
    MATERIALS,
    NUM_OBJECTS,
    RELATIONS,
    SHAPES,
    SIZES,
    Scene,
    attribute_labels,
    condition_vectors,
    min_visible_pixels,
    project,
    sample_scene,
    story_rng,
)
from sv_data.errors import SvkitError, require_at_least
from sv_data.shards import ExtraSpec, ShardSpec, StoryBatch
from sv_data.workers import default_workers

DATASET = "clevr-sv"
SCENE_STREAM, TEXT_STREAM = 0, 1
MAX_SCENE_TRIES = 1000


def object_extras() -> dict[str, ExtraSpec]:
    """The ``extra/`` arrays of every CLEVR-SV shard, built or imported: each object's attributes, as indices."""
    sizes = ", ".join(f"{name} (scale {scale})" for name, scale in SIZES.items())
    return {
        "shape": ExtraSpec((NUM_OBJECTS,), "uint8", f"shape of object k: index into {', '.join(SHAPES)}"),
        "color": ExtraSpec((NUM_OBJECTS,), "uint8", f"colour of object k: index into {', '.join(COLOR_NAMES)}"),
        "material": ExtraSpec((NUM_OBJECTS,), "uint8", f"material of object k: index into {', '.join(MATERIALS)}"),
        "size": ExtraSpec((NUM_OBJECTS,), "uint8", f"size of object k: index into {sizes}"),
    }


def one_story(split: str, index: int, objects, images, texts, labels, conditions, extra: dict,
              specs: dict[str, ExtraSpec]) -> StoryBatch:
    """Story ``index`` of ``split`` as a StoryBatch of length 1: the attributes of ``objects`` (those of
    :func:`object_extras`) join ``extra``, and each extra gets the dtype of its spec."""
    extra = {**{name: [getattr(o, name) for o in objects] for name in object_extras()}, **extra}
    return StoryBatch(
        images=np.asarray(images)[None],
        texts=[texts],
        story_ids=[f"{split}-{index:06d}"],
        labels=np.asarray(labels)[None],
        conditions=np.asarray(conditions)[None],
        extra={name: np.asarray(value, dtype=specs[name].dtype)[None] for name, value in extra.items()},
    )


def assets_digest(folder: Path) -> str:
    """SHA-256 over clevr-dataset-gen's shape and material files (names and bytes): what a build records of the
    assets it rendered, so that a resumed build must use the same ones wherever they lie."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted([*folder.glob("shapes/*.blend"), *folder.glob("materials/*.blend")]):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return "sha256:" + digest.hexdigest()


def extra_specs(image_size: int) -> dict[str, ExtraSpec]:
    """The ``extra/`` arrays of a CLEVR-SV shard (docs/clevr.md explains each)."""
    n, s = NUM_OBJECTS, image_size
    return {
        **object_extras(),
        "position": ExtraSpec((n, 3), "float32", "world x, y, z of the centre of object k"),
        "yaw": ExtraSpec((n,), "float32", "rotation of object k about the vertical axis, degrees"),
        "pixel_coords": ExtraSpec((n, n, 3), "float32",
                                  "[t, k] = (x, y, depth) of object k's centre in frame t: pixels from the top-left "
                                  "corner (y down), depth along the view axis; -1 when object k is not in frame t"),
        "boxes": ExtraSpec((n, n, 4), "int16",
                           "[t, k] = (x0, y0, x1, y1) box of object k's visible pixels in masks[t] (x1, y1 "
                           "exclusive); -1 when object k is not in frame t"),
        "pixel_counts": ExtraSpec((n, n), "int32", "[t, k] = pixels of object k visible in masks[t]"),
        "masks": ExtraSpec((n, s, s), "uint8", "instance mask of frame t: 0 background, k + 1 object k"),
        "camera_position": ExtraSpec((3,), "float32", "world position of the camera (jittered); it looks at the origin"),
        "camera_right": ExtraSpec((3,), "float32", "the camera's ground-plane right direction (unit, z = 0)"),
        "camera_front": ExtraSpec((3,), "float32", "ground-plane direction towards the camera: 'in front of' (unit)"),
        "light_positions": ExtraSpec((3, 3), "float32", "world positions of the key, fill and back lights (jittered)"),
        "text_anchor": ExtraSpec((n,), "int8", "object the sentence of frame t places the new object against; -1: none"),
        "text_relation": ExtraSpec((n,), "int8", f"relation of that sentence: index into {', '.join(RELATIONS)}; -1: none"),
    }


# Frames of one renderer version differ from another's; a build records it, so that a resumed build never mixes
# them. 2: CLEVR's shapes and materials, denoised whole frames (no seams), byte-reproducible.
RENDERER_VERSION = 2


@dataclass
class ClevrJob:
    """Builds CLEVR-SV stories; holds only plain options until :meth:`setup` starts Blender in the process."""

    seed: int = 0
    image_size: int = 64
    samples: int = DEFAULT_SAMPLES
    denoise: bool = True
    device: str = "cpu"
    threads: int = 0  # Cycles threads per process; 0 = all cores. Does not change the output.
    # Render every frame whole, rather than frames 0..2 from the frame after each (ClevrRenderer): the references
    # of benchmarks/render.py, which so measures what the shortcut costs in fidelity.
    whole_frames: bool = False
    clevr_assets: str | None = None  # clevr-dataset-gen's data folder: render its shapes and materials
    clevr_assets_digest: str | None = None  # assets_digest of that folder, hashed once per build
    _renderer: object = field(default=None, init=False, repr=False, compare=False)

    def config(self) -> dict:
        return {"dataset": DATASET, "renderer": RENDERER_VERSION, "seed": self.seed, "image_size": self.image_size,
                "samples": self.samples, "denoise": self.denoise, "device": self.device,
                "whole_frames": self.whole_frames, "clevr_assets": self.clevr_assets_digest}

    def spec(self, split: str) -> ShardSpec:
        return ShardSpec(
            dataset=DATASET,
            split=split,
            frames_per_story=NUM_OBJECTS,
            image_size=(self.image_size, self.image_size),
            label_names=LABEL_NAMES,
            condition_dim=CONDITION_DIM,
            build_config=self.config(),
            extras=extra_specs(self.image_size),
            condition_kind="clevr-objects",
        )

    def setup(self) -> None:
        from sv_data.clevr.render import ClevrRenderer

        if self._renderer is None:
            assets = None if self.clevr_assets is None else Path(self.clevr_assets)
            self._renderer = ClevrRenderer(self.image_size, self.samples, self.denoise, self.device, self.threads,
                                           assets)

    def __getstate__(self):
        return {**self.__dict__, "_renderer": None}

    def stories(self, split: str, start: int, stop: int) -> Iterator[StoryBatch]:
        self.setup()
        for index in range(start, stop):
            yield self.story(split, index)

    def story(self, split: str, index: int) -> StoryBatch:
        """Story ``index`` of ``split``: a function of (seed, split, index) and the rendering options only."""
        rng = story_rng(self.seed, split, index, SCENE_STREAM)
        need = min_visible_pixels((self.image_size, self.image_size))
        for _ in range(MAX_SCENE_TRIES):
            scene = sample_scene(rng)
            if not self._all_in_frame(scene):
                continue
            self._renderer.set_scene(scene)
            last = self._renderer.render_frame(NUM_OBJECTS - 1)
            counts = np.bincount(last.mask.ravel(), minlength=NUM_OBJECTS + 1)[1:]
            if counts.min() >= need:  # every object visible in the last frame is visible in every frame
                break
        else:
            raise SvkitError(f"{split} story {index}: no scene with every object visible in {MAX_SCENE_TRIES} tries")
        if self.whole_frames:
            frames = [self._renderer.render_frame(t) for t in range(NUM_OBJECTS - 1)]
        else:
            frames = self._renderer.render_earlier_frames(last)
        frames.append(last)
        return pack_story(scene, frames, split, index, self.seed)

    def _all_in_frame(self, scene: Scene) -> bool:
        """Cheap early rejection (before rendering) of scenes with an object centre outside the image."""
        size = self.image_size
        xy = project(scene.studio, np.array([o.position for o in scene.objects]), (size, size))[:, :2]
        return bool(((xy >= 0) & (xy < size)).all())

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def pack_story(scene: Scene, frames: list, split: str, index: int, seed: int) -> StoryBatch:
    """One story as a StoryBatch of length 1, from its scene and its rendered frames (each with an ``image`` and
    a ``mask``)."""
    objects, n = scene.objects, NUM_OBJECTS
    images = np.stack([frame.image for frame in frames])
    masks = np.stack([frame.mask for frame in frames])
    size = masks.shape[1:]
    positions = np.array([o.position for o in objects], np.float32)
    projected = project(scene.studio, positions, size).astype(np.float32)
    pixel_coords = np.full((n, n, 3), -1, np.float32)
    boxes = np.full((n, n, 4), -1, np.int16)
    counts = np.zeros((n, n), np.int32)
    for t in range(n):
        for k in range(t + 1):
            pixel_coords[t, k] = projected[k]
            ys, xs = np.nonzero(masks[t] == k + 1)
            counts[t, k] = len(xs)
            if len(xs):
                boxes[t, k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    texts, anchors, relations = describe(scene, story_rng(seed, split, index, TEXT_STREAM))
    extra = {
        "position": positions,
        "yaw": [o.yaw for o in objects],
        "pixel_coords": pixel_coords,
        "boxes": boxes,
        "pixel_counts": counts,
        "masks": masks,
        "camera_position": scene.studio.camera,
        "camera_right": scene.studio.right,
        "camera_front": scene.studio.front,
        "light_positions": scene.studio.lights,
        "text_anchor": anchors,
        "text_relation": relations,
    }
    return one_story(split, index, objects, images, texts, attribute_labels(objects), condition_vectors(scene),
                     extra, extra_specs(size[0]))


def build_clevr(out_dir: os.PathLike | str, split_sizes: Mapping[str, int], *, seed: int = 0, image_size: int = 64,
                samples: int = DEFAULT_SAMPLES, denoise: bool = True, device: str = "cpu", workers: int | None = None,
                chunk_size: int = CHUNK_SIZE, progress: bool = True, ray_address: str | None = None,
                shard: tuple[int, int] | None = None, whole_frames: bool = False,
                clevr_assets: os.PathLike | str | None = None) -> dict[str, Path]:
    """Build (or resume) CLEVR-SV into ``out_dir``; returns the split files. Checks every option first.

    ``ray_address`` renders the chunks on Ray actors (``"local"`` starts Ray here); ``shard=(i, n)`` renders only
    chunks i, i+n, ... (one job of an array) and leaves the joining to :func:`sv_data.build.merge`, so it returns
    no split file until the last job's parts are merged. ``whole_frames`` renders every frame whole (the
    references of ``benchmarks/render.py``). ``clevr_assets`` renders the original shapes and materials of a
    clevr-dataset-gen checkout instead of svkit's own.
    """
    from sv_data.build import build, check_run_options
    from sv_data.clevr.render import DEVICES

    workers = default_workers() if workers is None else workers
    for name, n in split_sizes.items():
        require_at_least(f"--n-{name}", n, 0)
    if not any(split_sizes.values()):
        raise SvkitError("nothing to build: every split has 0 stories")
    require_at_least("--image-size", image_size, 8)
    require_at_least("--samples", samples, 1)
    check_run_options(workers, chunk_size, shard)  # before the threads per worker are worked out
    if device not in DEVICES:
        raise SvkitError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "gpu" and ray_address is None:  # on Ray the GPUs that count are the nodes', not this one's
        from sv_data.clevr.render import enable_gpu

        enable_gpu()  # fail here, with one line, rather than in every worker
    # A Ray actor holds one CPU of its node, so it renders with one thread; local workers share this machine.
    threads = 1 if ray_address is not None else max(1, default_workers() // workers)
    digest = None
    if clevr_assets is not None:
        from sv_data.clevr.render import find_clevr_assets

        clevr_assets = str(find_clevr_assets(Path(clevr_assets)).resolve())
        digest = assets_digest(Path(clevr_assets))
    job = ClevrJob(seed=seed, image_size=image_size, samples=samples, denoise=denoise, device=device, threads=threads,
                   whole_frames=whole_frames, clevr_assets=clevr_assets, clevr_assets_digest=digest)
    try:
        return build(job, out_dir, split_sizes, workers=workers, chunk_size=chunk_size, progress=progress,
                     desc="CLEVR-SV stories", ray_address=ray_address, shard=shard)
    finally:
        job.close()
