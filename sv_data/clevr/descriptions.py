"""One English sentence per frame of a CLEVR-SV story: the new object, and where it is relative to one already there.

Every sentence is true of the scene: the relation is read from the object positions in the camera's ground axes,
where the placement rules keep every pair at least MIN_MARGIN apart, so left/right and front/behind are never
ambiguous.
"""
from __future__ import annotations

import numpy as np

from sv_data.clevr.scene import RELATIONS, Scene, SceneObject

_FIRST = (
    "A {new} is in the scene.",
    "There is a {new}.",
    "The story starts with a {new}.",
    "A {new} appears.",
    "First comes a {new}.",
)
_NEXT = (
    "A {new} appears {where} the {old}.",
    "There is now a {new} {where} the {old}.",
    "A {new} is added {where} the {old}.",
    "Next, a {new} is placed {where} the {old}.",
    "{where_cap} the {old} a {new} appears.",
)
_WHERE = {"left": "to the left of", "right": "to the right of", "front": "in front of", "behind": "behind"}


def noun_phrase(obj: SceneObject) -> str:
    return " ".join(obj.words())


def relation(scene: Scene, new: int, old: int) -> tuple[str, str]:
    """The two true relations of object ``new`` to object ``old``: (left or right, front or behind)."""
    a, b = scene.objects[new], scene.objects[old]
    d = np.array([a.x - b.x, a.y - b.y])
    side = "right" if d @ scene.studio.right[:2] > 0 else "left"
    depth = "front" if d @ scene.studio.front[:2] > 0 else "behind"
    return side, depth


def describe(scene: Scene, rng: np.random.Generator) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(sentences, anchor, relation) per frame. ``anchor[t]`` is the object frame t's sentence relates the new
    object to and ``relation[t]`` the index into RELATIONS; both -1 for the first frame."""
    objects = scene.objects
    texts, anchors, relations = [], np.full(len(objects), -1, np.int8), np.full(len(objects), -1, np.int8)
    for t, obj in enumerate(objects):
        if t == 0:
            texts.append(_FIRST[rng.integers(len(_FIRST))].format(new=noun_phrase(obj)))
            continue
        phrases = [noun_phrase(o) for o in objects[:t]]
        # Prefer an anchor whose description names one object only, so that "the ..." is unambiguous.
        unique = [k for k in range(t) if phrases.count(phrases[k]) == 1] or list(range(t))
        old = int(unique[rng.integers(len(unique))])
        rel = relation(scene, t, old)[rng.integers(2)]
        where = _WHERE[rel]
        template = _NEXT[rng.integers(len(_NEXT))]
        texts.append(template.format(new=noun_phrase(obj), old=phrases[old], where=where,
                                     where_cap=where[0].upper() + where[1:]))
        anchors[t], relations[t] = old, RELATIONS.index(rel)
    return texts, anchors, relations
