"""CLEVR-SV scenes without Blender: the vocabularies, the studio and its jitter, object placement, projection.

Everything here is plain numpy so that it can be tested fast and reused by tools that never render. The rules
follow CLEVR's scene generator (``render_images.py``) and the StoryGAN paper; the numbers of the studio were read
from CLEVR's ``base_scene.blend``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SHAPES = ("cube", "sphere", "cylinder")
COLORS = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
COLOR_NAMES = tuple(COLORS)
MATERIALS = ("rubber", "metal")
SIZES = {"large": 0.7, "small": 0.35}
SIZE_NAMES = tuple(SIZES)
LABEL_NAMES = (*SHAPES, *COLOR_NAMES, *MATERIALS, *SIZE_NAMES)
RELATIONS = ("left", "right", "front", "behind")

NUM_OBJECTS = 4  # = frames per story: frame t shows objects 0..t
SLOT_SIZE = len(SHAPES) + len(COLORS) + len(MATERIALS) + len(SIZES) + 3
CONDITION_DIM = NUM_OBJECTS * SLOT_SIZE + 3

# The studio of CLEVR's base scene. Lights and camera aim at the origin.
CAMERA_POSITION = (7.4811, -6.5076, 5.3437)
CAMERA_LENS_MM = 35.0
CAMERA_SENSOR_MM = 32.0  # fitted to the image width
CAMERA_JITTER = 0.5
LIGHT_JITTER = 1.0


@dataclass(frozen=True)
class AreaLight:
    name: str
    position: tuple[float, float, float]
    size: float
    watts: float
    color: tuple[float, float, float]


LIGHTS = (
    AreaLight("key", (6.4467, -2.9052, 4.2584), 0.5, 78.5, (1.0, 0.932, 0.817)),
    AreaLight("fill", (-4.6711, -4.0136, 3.0112), 0.5, 23.6, (0.762, 0.818, 1.0)),
    AreaLight("back", (-1.1685, 2.6460, 5.8157), 1.0, 39.3, (1.0, 1.0, 1.0)),
)
SUN_STRENGTH = 0.45
SUN_ANGLE = 0.2
SUN_DIRECTION = (-0.41, 0.19, -0.89)

# The frame StoryGAN squashed to a square: 4:3, like CLEVR's 320x240 renders.
FRAME_ASPECT = 4 / 3
CLEVR_FRAME = (240, 320)  # (H, W)
CLEVR_MIN_PIXELS = 200  # every object must show at least this many pixels at 320x240

# Placement (CLEVR's defaults).
PLACEMENT_RANGE = 3.0
MIN_DISTANCE = 0.25
MIN_MARGIN = 0.4
MAX_RETRIES = 50


@dataclass(frozen=True)
class SceneObject:
    shape: int  # index into SHAPES
    color: int  # index into COLOR_NAMES
    material: int  # index into MATERIALS
    size: int  # index into SIZE_NAMES
    x: float
    y: float
    yaw: float  # degrees about the vertical axis

    @property
    def scale(self) -> float:
        """Half extent, and the height of the centre above the ground."""
        return SIZES[SIZE_NAMES[self.size]]

    @property
    def radius(self) -> float:
        """Radius of the object's footprint: a cube's corners reach scale * sqrt(2) from its centre."""
        return self.scale * (math.sqrt(2) if SHAPES[self.shape] == "cube" else 1.0)

    @property
    def position(self) -> np.ndarray:
        return np.array([self.x, self.y, self.scale])

    def words(self) -> tuple[str, str, str, str]:
        """(size, colour, material, shape) as words."""
        return SIZE_NAMES[self.size], COLOR_NAMES[self.color], MATERIALS[self.material], SHAPES[self.shape]


@dataclass(frozen=True)
class Studio:
    camera: tuple[float, float, float]
    lights: tuple[tuple[float, float, float], ...]  # key, fill, back

    @property
    def forward(self) -> np.ndarray:
        """Unit view direction of the camera (it looks at the origin)."""
        c = np.asarray(self.camera, dtype=np.float64)
        return -c / np.linalg.norm(c)

    @property
    def right(self) -> np.ndarray:
        """The camera's right direction on the ground plane (unit, z = 0)."""
        f = self.forward
        r = np.array([f[1], -f[0], 0.0])
        return r / np.linalg.norm(r)

    @property
    def front(self) -> np.ndarray:
        """On the ground plane, the direction towards the camera: "in front of" means further along it."""
        f = self.forward
        v = np.array([-f[0], -f[1], 0.0])
        return v / np.linalg.norm(v)

    @property
    def up(self) -> np.ndarray:
        """The camera's up direction (no roll: world up projected onto the image plane)."""
        return np.cross(self.right, self.forward)


@dataclass(frozen=True)
class Scene:
    studio: Studio
    objects: tuple[SceneObject, ...]


def sample_studio(rng: np.random.Generator) -> Studio:
    """The base studio with the camera jittered by up to CAMERA_JITTER and each area light by up to LIGHT_JITTER
    on every axis (CLEVR's defaults)."""
    camera = np.asarray(CAMERA_POSITION) + rng.uniform(-CAMERA_JITTER, CAMERA_JITTER, 3)
    lights = [np.asarray(light.position) + rng.uniform(-LIGHT_JITTER, LIGHT_JITTER, 3) for light in LIGHTS]
    return Studio(camera=_tuple(camera), lights=tuple(_tuple(p) for p in lights))


def _tuple(v) -> tuple[float, float, float]:
    return tuple(float(x) for x in v)


def fits(candidate: SceneObject, placed: list[SceneObject], studio: Studio) -> bool:
    """CLEVR's placement rules against every object already placed: the footprints are at least MIN_DISTANCE apart,
    and the two differ by at least MIN_MARGIN both left-right and front-back as the camera sees them (so that every
    spatial relation between them is unambiguous)."""
    right, front = studio.right[:2], studio.front[:2]
    for other in placed:
        d = np.array([candidate.x - other.x, candidate.y - other.y])
        if np.hypot(*d) - candidate.radius - other.radius < MIN_DISTANCE:
            return False
        if abs(d @ right) < MIN_MARGIN or abs(d @ front) < MIN_MARGIN:
            return False
    return True


def _random_object(rng: np.random.Generator) -> SceneObject:
    return SceneObject(
        shape=int(rng.integers(len(SHAPES))),
        color=int(rng.integers(len(COLORS))),
        material=int(rng.integers(len(MATERIALS))),
        size=int(rng.integers(len(SIZES))),
        x=float(rng.uniform(-PLACEMENT_RANGE, PLACEMENT_RANGE)),
        y=float(rng.uniform(-PLACEMENT_RANGE, PLACEMENT_RANGE)),
        yaw=float(rng.uniform(0.0, 360.0)),
    )


def place_objects(rng: np.random.Generator, studio: Studio, count: int = NUM_OBJECTS) -> tuple[SceneObject, ...]:
    """``count`` objects placed one by one; an object that does not fit after MAX_RETRIES tries makes the whole
    scene start again, as CLEVR does."""
    while True:
        placed: list[SceneObject] = []
        while len(placed) < count:
            for _ in range(MAX_RETRIES):
                candidate = _random_object(rng)
                if fits(candidate, placed, studio):
                    placed.append(candidate)
                    break
            else:
                break
        if len(placed) == count:
            return tuple(placed)


def sample_scene(rng: np.random.Generator, count: int = NUM_OBJECTS) -> Scene:
    studio = sample_studio(rng)
    return Scene(studio=studio, objects=place_objects(rng, studio, count))


def story_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    """The random stream ``stream`` of story ``index`` of ``split``: a function of these numbers only, so a story
    comes out the same whatever the workers, chunks or interruptions of the build."""
    split_code = {"train": 0, "val": 1, "test": 2}[split]
    return np.random.default_rng(np.random.SeedSequence([seed, split_code, index, stream]))


def min_visible_pixels(image_size: tuple[int, int]) -> int:
    """CLEVR's 200 pixels at 320x240, scaled to an image of ``image_size`` (H, W) showing the same 4:3 frame."""
    h, w = image_size
    return max(1, math.ceil(CLEVR_MIN_PIXELS * h * w / (CLEVR_FRAME[0] * CLEVR_FRAME[1])))


def project(studio: Studio, points: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """World points (n, 3) -> (n, 3) of (x, y, depth): pixel coordinates in an image of ``image_size`` (H, W)
    that shows the camera's 4:3 frame (origin at the top-left corner, y down), and the distance along the view
    axis."""
    h, w = image_size
    rel = np.asarray(points, dtype=np.float64) - np.asarray(studio.camera)
    depth = rel @ studio.forward
    focal = CAMERA_LENS_MM / CAMERA_SENSOR_MM  # in frame widths
    u = 0.5 + focal * (rel @ studio.right) / depth
    v = 0.5 - focal * FRAME_ASPECT * (rel @ studio.up) / depth
    return np.stack([u * w, v * h, depth], axis=1)


def attribute_labels(objects: tuple[SceneObject, ...]) -> np.ndarray:
    """uint8 (T, 15): frame t's multi-hot of the attributes of objects 0..t (columns LABEL_NAMES)."""
    labels = np.zeros((len(objects), len(LABEL_NAMES)), np.uint8)
    for t in range(len(objects)):
        for obj in objects[: t + 1]:
            for offset, value in zip(_OFFSETS, (obj.shape, obj.color, obj.material, obj.size)):
                labels[t, offset + value] = 1
    return labels


_OFFSETS = np.cumsum([0, len(SHAPES), len(COLORS), len(MATERIALS)])


def condition_vectors(scene: Scene) -> np.ndarray:
    """float32 (T, 75): StoryGAN's vector per frame. Slot k holds object k's one-hot attributes and x, y, z once
    the object is in the frame, zeros before; the last three numbers are the camera's ground-plane right."""
    objects = scene.objects
    conditions = np.zeros((len(objects), CONDITION_DIM), np.float32)
    for k, obj in enumerate(objects):
        slot = np.zeros(SLOT_SIZE, np.float32)
        for offset, value in zip(_OFFSETS, (obj.shape, obj.color, obj.material, obj.size)):
            slot[offset + value] = 1
        slot[-3:] = obj.position
        conditions[k:, k * SLOT_SIZE : (k + 1) * SLOT_SIZE] = slot
    conditions[:, -3:] = scene.studio.right
    return conditions
