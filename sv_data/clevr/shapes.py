"""CLEVR's three shapes as meshes made in code: vertices and faces only, so this module needs no Blender.

They follow the meshes of clevr-dataset-gen (``image_generation/data/shapes/*.blend``, read with bpy 4.5; the files
themselves are not part of svkit). Every shape spans [-1, 1] on each axis and is scaled by the object's size:

- SmoothCube_v2: flat square faces out to +-0.75, joined by rounded edges and corners whose profile is the
  superellipse |u|^3 + |v|^3 = 0.25^3 (its 45-degree point lies at 0.9484 from the centre, where a circular
  rounding would give 0.9268); all smooth-shaded (the big faces stay flat: their corner normals point straight
  out). The original has 12 quads across each half of a rounded edge (6 x 25 x 25 quads).
- SmoothCylinder: the side is straight from z = -0.9 to 0.9; the rims are rounded with the superellipse
  |u|^4 + |v|^4 = 0.1^4 about (r, z) = (0.9, +-0.9); flat-shaded. The original has 128 segments round and 16 on
  each rim.
- Sphere: radius 1 (the original is flat-shaded at 15,360 faces, which at these sizes is a smooth sphere).

svkit tessellates the same surfaces more coarsely (the counts below): a Cycles render re-syncs every mesh in the
scene whenever an object moves, and with the originals' counts that took 30 ms instead of 12 per render. At 64x64
the frames differ from those of the original counts by 54 dB PSNR (64 samples, 8 stories), far below a build's own
noise (about 41 dB).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CUBE_FLAT_HALF = 0.75
CUBE_EXPONENT = 3.0
CUBE_STEPS = 4  # quads across each half of a rounded edge (9 x 9 quads a face; SmoothCube_v2: 12, 25 x 25)
CYLINDER_RIM = 0.1
CYLINDER_EXPONENT = 4.0
CYLINDER_RIM_STEPS = 6
CYLINDER_SEGMENTS = 48
SPHERE_SEGMENTS = 32
SPHERE_RINGS = 16


@dataclass(frozen=True)
class MeshData:
    vertices: np.ndarray  # float (V, 3)
    faces: list[tuple[int, ...]]  # vertex indices, counter-clockwise seen from outside
    smooth: bool  # smooth shading (vertex normals) rather than flat faces


def rounded_cube() -> MeshData:
    """SmoothCube_v2: a grid on each face of the cube [-1, 1]^3 whose points beyond the flat part are pushed onto
    the superellipse rounding, so that the faces of neighbouring sides meet along the rounded edge."""
    rounding = 1.0 - CUBE_FLAT_HALF
    near = np.linspace(-1.0, -CUBE_FLAT_HALF, CUBE_STEPS + 1)
    grid = np.concatenate([near, -near[::-1]])  # the flat middle is one quad
    n = len(grid)
    vertices, faces = [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            b, c = [a for a in range(3) if a != axis]
            u = np.zeros((n, n, 3))
            u[..., axis] = sign
            u[..., b], u[..., c] = np.meshgrid(grid, grid, indexing="ij")
            inner = np.clip(u, -CUBE_FLAT_HALF, CUBE_FLAT_HALF)
            d = u - inner
            length = np.sum(np.abs(d) ** CUBE_EXPONENT, axis=-1, keepdims=True) ** (1 / CUBE_EXPONENT)
            points = inner + rounding * d / length
            ids = len(vertices) + np.arange(n * n).reshape(n, n)
            vertices.extend(points.reshape(-1, 3))
            faces.extend((ids[i, j], ids[i + 1, j], ids[i + 1, j + 1], ids[i, j + 1])
                         for i in range(n - 1) for j in range(n - 1))
    return _outward(*_merged(np.array(vertices), faces), smooth=True)


def cylinder() -> MeshData:
    """SmoothCylinder: the profile (r, z) from the top's centre round the rounded rim, down the side and back to
    the bottom's centre, turned about the z axis."""
    angles = np.linspace(math.pi / 2, 0.0, CYLINDER_RIM_STEPS + 1)
    power = 2 / CYLINDER_EXPONENT
    centre = 1.0 - CYLINDER_RIM
    rim = [(centre + CYLINDER_RIM * math.cos(a) ** power, centre + CYLINDER_RIM * math.sin(a) ** power)
           for a in angles]
    rim[-1] = (1.0, centre)  # cos(0) ** power is 1, but sin(0) ** power leaves no rounding error to remove
    profile = [(0.0, 1.0), *rim, *[(r, -z) for r, z in reversed(rim)], (0.0, -1.0)]
    return revolved(profile, CYLINDER_SEGMENTS, smooth=False)


def sphere() -> MeshData:
    angles = np.linspace(0.0, math.pi, SPHERE_RINGS + 1)
    profile = [(math.sin(a), math.cos(a)) for a in angles]
    profile[0], profile[-1] = (0.0, 1.0), (0.0, -1.0)
    return revolved(profile, SPHERE_SEGMENTS, smooth=True)


def revolved(profile: list[tuple[float, float]], segments: int, smooth: bool) -> MeshData:
    """The surface that ``profile`` ((r, z) points, from top to bottom) sweeps turning about the z axis: a ring of
    ``segments`` vertices per point, or one vertex where r is 0."""
    turns = np.linspace(0.0, 2 * math.pi, segments, endpoint=False)
    vertices, rings = [], []
    for r, z in profile:
        if r == 0.0:
            rings.append([len(vertices)] * segments)
            vertices.append((0.0, 0.0, z))
        else:
            rings.append(list(range(len(vertices), len(vertices) + segments)))
            vertices.extend((r * math.cos(t), r * math.sin(t), z) for t in turns)
    faces = []
    for upper, lower in zip(rings, rings[1:]):
        for s in range(segments):
            quad = (upper[s], lower[s], lower[(s + 1) % segments], upper[(s + 1) % segments])
            faces.append(tuple(dict.fromkeys(quad)))  # a pole's quad is a triangle
    return _outward(np.array(vertices), faces, smooth)


def _merged(vertices: np.ndarray, faces: list[tuple[int, ...]]) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """One vertex for each place (the face grids share their border rows)."""
    unique, index = np.unique(np.round(vertices, 9), axis=0, return_inverse=True)
    index = index.ravel()
    return unique, [tuple(int(index[v]) for v in face) for face in faces]


def _outward(vertices: np.ndarray, faces: list[tuple[int, ...]], smooth: bool) -> MeshData:
    """Every face wound counter-clockwise seen from outside: the shapes are convex about the origin, so a face's
    normal must point away from it."""
    oriented = []
    for face in faces:
        p = vertices[list(face)]
        normal = np.cross(p[1] - p[0], p[-1] - p[0])
        oriented.append(face if normal @ p.mean(axis=0) > 0 else face[::-1])
    return MeshData(vertices, oriented, smooth)


SHAPE_MESHES = {"cube": rounded_cube, "sphere": sphere, "cylinder": cylinder}
