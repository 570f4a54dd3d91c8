"""CLEVR's shapes made in code (sv_data.clevr.shapes), checked against the facts read from clevr-dataset-gen's
.blend files, and the seam measure (sv_data.clevr.seams) on pictures made to have, or not to have, a seam."""
from collections import Counter

import numpy as np
import pytest

from sv_data.clevr import shapes
from sv_data.clevr.seams import seam_ratio
from sv_data.clevr.shapes import SHAPE_MESHES, cylinder, rounded_cube, sphere


def edge_uses(mesh):
    return Counter(tuple(sorted((f[i], f[(i + 1) % len(f)]))) for f in mesh.faces for i in range(len(f)))


def signed_volume(mesh):
    """Positive when every face is wound counter-clockwise seen from outside (divergence theorem)."""
    v = mesh.vertices
    return sum(np.dot(v[f[0]], np.cross(v[f[i]], v[f[i + 1]])) for f in mesh.faces for i in range(1, len(f) - 1)) / 6


@pytest.mark.parametrize("make", list(SHAPE_MESHES.values()), ids=list(SHAPE_MESHES))
def test_each_shape_is_closed_faces_outwards_and_spans_the_unit_cube(make):
    mesh = make()
    assert set(edge_uses(mesh).values()) == {2}  # watertight, no edge shared by three faces
    np.testing.assert_allclose(mesh.vertices.min(axis=0), -1, atol=1e-9)
    np.testing.assert_allclose(mesh.vertices.max(axis=0), 1, atol=1e-9)
    assert signed_volume(mesh) > 0


def test_cube_has_smoothcube_v2s_layout_and_rounding(monkeypatch):
    monkeypatch.setattr(shapes, "CUBE_STEPS", 12)  # SmoothCube_v2's own tessellation
    cube = rounded_cube()
    assert (len(cube.vertices), len(cube.faces), cube.smooth) == (3752, 3750, True)
    top = cube.vertices[np.isclose(cube.vertices[:, 2], 1.0)]
    assert np.abs(top[:, :2]).max() == pytest.approx(0.75)  # the flat face ends where the rounding starts
    # On the rounded edge, halfway round: 0.9484 in SmoothCube_v2 (a circular rounding would reach 0.9268).
    mid = cube.vertices[np.isclose(cube.vertices[:, 0], cube.vertices[:, 2]) & np.isclose(cube.vertices[:, 1], 0.75)]
    assert mid[:, 0].max() == pytest.approx(0.9484, abs=2e-4)
    # Rounder than a box, squarer than circular roundings of radius 0.25 (which leave 7.84... less than 8 by
    # 12 edges of (1 - pi / 4) 0.25^2 x 1.5 and 8 corners of (1 - pi / 6) 0.25^3).
    circular = 8 - 12 * (1 - np.pi / 4) * 0.25**2 * 1.5 - 8 * (1 - np.pi / 6) * 0.25**3
    assert circular < signed_volume(cube) < 8


def test_cylinder_has_a_straight_side_rounded_rims_and_flat_shading():
    mesh = cylinder()
    v = mesh.vertices
    radius = np.hypot(v[:, 0], v[:, 1])
    side = v[np.isclose(radius, 1.0)]
    assert side[:, 2].min() == pytest.approx(-0.9) and side[:, 2].max() == pytest.approx(0.9)
    cap = v[np.isclose(v[:, 2], 1.0)]
    assert np.hypot(cap[:, 0], cap[:, 1]).max() == pytest.approx(0.9)
    rim = (radius > 0.9 + 1e-9) & (v[:, 2] > 0.9 + 1e-9)
    u, w = (radius[rim] - 0.9) / 0.1, (v[rim, 2] - 0.9) / 0.1
    np.testing.assert_allclose(u**4 + w**4, 1.0, atol=1e-9)  # SmoothCylinder's superellipse of exponent 4
    assert not mesh.smooth and len(np.unique(np.round(np.arctan2(side[:, 1], side[:, 0]), 9))) == shapes.CYLINDER_SEGMENTS


def test_sphere_is_a_unit_sphere():
    mesh = sphere()
    np.testing.assert_allclose(np.linalg.norm(mesh.vertices, axis=1), 1.0, atol=1e-9)
    assert mesh.smooth


def two_frames(pasted_step: float, size=32):
    """Frame 1: a smooth ramp. Frame 0: the same, but inside a box, re-rendered: with a faint smooth difference
    (as after denoising slightly different input), offset by ``pasted_step`` (a seam all round the box)."""
    ramp = np.linspace(60, 180, size)
    after = np.add.outer(ramp / 4, ramp)
    y, x = np.mgrid[:size, :size] / size
    here = after.copy()
    box = np.s_[8:24, 8:24]
    here[box] += 0.8 * np.sin(2 * np.pi * (x + 2 * y))[box] + pasted_step
    frames = np.rint(np.stack([here, after])).clip(0, 255).astype(np.uint8)
    return np.repeat(frames[None, ..., None], 3, axis=-1)


def test_seam_ratio_sees_a_pasted_box_and_not_a_seamless_one():
    assert seam_ratio(two_frames(pasted_step=6)) > 1.5
    assert 0.9 < seam_ratio(two_frames(pasted_step=0)) < 1.1
    assert np.isnan(seam_ratio(np.zeros((1, 2, 8, 8, 3), np.uint8)))  # nothing differs: no border at all
