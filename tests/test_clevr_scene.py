"""CLEVR-SV scene sampling, placement rules, vectors and sentences: pure logic, no Blender."""
import math

import numpy as np
import pytest

from sv_data.clevr.descriptions import describe, relation
from sv_data.clevr.scene import (
    CAMERA_JITTER,
    CAMERA_POSITION,
    CONDITION_DIM,
    LABEL_NAMES,
    LIGHT_JITTER,
    LIGHTS,
    MIN_DISTANCE,
    MIN_MARGIN,
    RELATIONS,
    SLOT_SIZE,
    Scene,
    SceneObject,
    Studio,
    attribute_labels,
    condition_vectors,
    fits,
    min_visible_pixels,
    project,
    sample_scene,
    story_rng,
)

BASE = Studio(camera=CAMERA_POSITION, lights=tuple(light.position for light in LIGHTS))


def scenes(n=200):
    return [sample_scene(story_rng(7, "train", i, 0)) for i in range(n)]


def test_every_pair_keeps_clevr_distance_and_margins():
    for scene in scenes():
        assert len(scene.objects) == 4
        right, front = scene.studio.right[:2], scene.studio.front[:2]
        for i, a in enumerate(scene.objects):
            assert -3 <= a.x <= 3 and -3 <= a.y <= 3 and 0 <= a.yaw < 360
            for b in scene.objects[:i]:
                d = np.array([a.x - b.x, a.y - b.y])
                assert np.hypot(*d) - a.radius - b.radius >= MIN_DISTANCE
                assert abs(d @ right) >= MIN_MARGIN and abs(d @ front) >= MIN_MARGIN


def test_studio_jitter_stays_within_clevr_bounds_and_varies():
    cameras = []
    for scene in scenes(100):
        cameras.append(scene.studio.camera)
        assert np.all(np.abs(np.subtract(scene.studio.camera, CAMERA_POSITION)) <= CAMERA_JITTER)
        for light, base in zip(scene.studio.lights, LIGHTS):
            assert np.all(np.abs(np.subtract(light, base.position)) <= LIGHT_JITTER)
    assert len(set(cameras)) == 100


def test_scenes_depend_only_on_seed_split_and_index():
    assert sample_scene(story_rng(3, "train", 5, 0)) == sample_scene(story_rng(3, "train", 5, 0))
    others = [story_rng(3, "test", 5, 0), story_rng(4, "train", 5, 0), story_rng(3, "train", 6, 0),
              story_rng(3, "train", 5, 1)]
    reference = sample_scene(story_rng(3, "train", 5, 0))
    assert all(sample_scene(rng) != reference for rng in others)


def test_fits_rejects_touching_and_ambiguous_pairs():
    right, front = BASE.right[:2], BASE.front[:2]

    def at(offset, size=1, shape=1):
        return SceneObject(shape=shape, color=0, material=0, size=size, x=float(offset[0]), y=float(offset[1]), yaw=0)

    origin = at((0, 0))  # a small sphere, radius 0.35
    assert fits(at(right * 1.5 + front * 1.5), [origin], BASE)
    assert not fits(at(right * 0.6 + front * 0.6), [origin], BASE)  # footprints closer than 0.25
    assert not fits(at(right * 2.0 + front * 0.3), [origin], BASE)  # far apart, but front-back ambiguous
    assert not fits(at(right * 0.3 + front * 2.0), [origin], BASE)  # left-right ambiguous
    # a cube reaches its corners: scale * sqrt(2)
    assert at((0, 0), shape=0).radius == pytest.approx(0.35 * math.sqrt(2))


def test_camera_axes_and_projection():
    assert BASE.right[2] == 0 and BASE.front[2] == 0
    assert np.linalg.norm(BASE.right) == pytest.approx(1) and BASE.right @ BASE.front == pytest.approx(0)
    centre = project(BASE, np.zeros((1, 3)), (240, 320))[0]
    assert centre[:2] == pytest.approx([160, 120])  # the camera looks at the origin
    right, front, up = project(BASE, np.array([BASE.right, BASE.front, [0, 0, 1]]), (240, 320))
    assert right[0] > 160 and front[1] > 120 and up[1] < 120  # right goes right; towards the camera goes down
    assert front[2] < centre[2]  # and comes closer


def test_min_visible_pixels_scales_clevr_rule():
    assert min_visible_pixels((240, 320)) == 200
    assert min_visible_pixels((64, 64)) == 11


def hand_scene():
    objects = (
        SceneObject(shape=0, color=1, material=1, size=0, x=0.0, y=0.0, yaw=10),  # large red metal cube
        SceneObject(shape=2, color=6, material=0, size=1, x=-1.0, y=3.0, yaw=0),  # small cyan rubber cylinder
        SceneObject(shape=1, color=7, material=0, size=1, x=-2.0, y=1.0, yaw=0),
        SceneObject(shape=1, color=7, material=0, size=1, x=-2.0, y=-2.5, yaw=0),
    )
    return Scene(studio=BASE, objects=objects)


def test_conditions_are_cumulative_storygan_vectors():
    scene = hand_scene()
    c = condition_vectors(scene)
    assert c.shape == (4, CONDITION_DIM) == (4, 75)
    slot1 = c[:, SLOT_SIZE : 2 * SLOT_SIZE]
    assert not slot1[0].any() and (slot1[1:] == slot1[1]).all()
    assert np.flatnonzero(slot1[1][:15]).tolist() == [2, 3 + 6, 11 + 0, 13 + 1]  # cylinder, cyan, rubber, small
    assert slot1[1][15:] == pytest.approx([-1.0, 3.0, 0.35])
    assert c[:, -3:] == pytest.approx(np.tile(BASE.right, (4, 1)))


def test_labels_are_cumulative_multi_hot():
    labels = attribute_labels(hand_scene().objects)
    names = lambda row: {LABEL_NAMES[j] for j in np.flatnonzero(row)}
    assert names(labels[0]) == {"cube", "red", "metal", "large"}
    assert names(labels[1]) == {"cube", "red", "metal", "large", "cylinder", "cyan", "rubber", "small"}
    assert (np.diff(labels.astype(int), axis=0) >= 0).all()


def test_sentences_name_the_new_object_and_a_true_relation():
    for i, scene in enumerate(scenes(100)):
        texts, anchors, relations = describe(scene, story_rng(7, "train", i, 1))
        assert anchors[0] == -1 and relations[0] == -1
        for t, text in enumerate(texts):
            size, color, material, shape = scene.objects[t].words()
            assert f"{size} {color} {material} {shape}" in text
            if t:
                old, rel = int(anchors[t]), RELATIONS[relations[t]]
                assert 0 <= old < t and rel in relation(scene, t, old)
                assert " ".join(scene.objects[old].words()) in text
    # the camera is at (7.5, -6.5): (-1, 3) is further from it than the origin, and to its right
    assert relation(hand_scene(), 1, 0) == ("right", "behind")


def test_sentences_are_deterministic_and_varied():
    scene = hand_scene()
    assert describe(scene, story_rng(0, "train", 1, 1))[0] == describe(scene, story_rng(0, "train", 1, 1))[0]
    variants = {tuple(describe(scene, story_rng(0, "train", i, 1))[0]) for i in range(30)}
    assert len(variants) > 10
