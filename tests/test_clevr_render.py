"""Rendering a frame from the next one: the region logic on its own, and real Cycles renders against whole ones."""
import json
import subprocess
import sys

import numpy as np

from sv_data.clevr.render import SHADOW_REACH, changed_region
from sv_data.shards import ShardReader


def mask_with(boxes, size=64):
    """An instance mask with object k + 1 filling boxes[k] = (x0, y0, x1, y1)."""
    mask = np.zeros((size, size), np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        mask[y0:y1, x0:x1] = k + 1
    return mask


def test_region_is_the_removed_object_grown_by_its_size():
    mask = mask_with([(5, 5, 9, 9), (30, 20, 40, 26)])
    grow = int(np.ceil(SHADOW_REACH * 10))
    assert changed_region(mask, removed=1, mirrors=[]) == (30 - grow, 20 - grow, 40 + grow, 26 + grow)


def test_region_takes_in_the_mirrors_nearby_and_stays_inside_the_image():
    near = mask_with([(50, 8, 54, 12), (58, 1, 63, 6)])  # object 0 within one side (5 px) of object 1
    far = mask_with([(2, 50, 6, 60), (58, 1, 63, 6)])
    grow = int(np.ceil(SHADOW_REACH * 5))
    alone = (58 - grow, 0, 64, 6 + grow)
    assert changed_region(near, removed=1, mirrors=[0]) == (50, 0, 64, max(12, 6 + grow))
    assert changed_region(far, removed=1, mirrors=[0]) == alone
    assert changed_region(near, removed=1, mirrors=[]) == alone


def test_no_region_when_the_removed_object_does_not_show():
    assert changed_region(mask_with([(5, 5, 9, 9)]), removed=1, mirrors=[0]) is None


COMPARE = r"""
import json
import numpy as np
from sv_data.clevr.render import ClevrRenderer
from sv_data.clevr.scene import sample_scene

renderer = ClevrRenderer(64, 4, True, threads=1)
masks_equal, squared, changed = True, [], []
for seed in range(3):
    renderer.set_scene(sample_scene(np.random.default_rng(seed)))
    whole = [renderer.render_frame(t) for t in range(4)]
    earlier = renderer.render_earlier_frames(whole[3])
    for t, frame in enumerate(earlier):
        masks_equal &= bool((frame.mask == whole[t].mask).all())
        squared.append(((frame.image.astype(float) - whole[t].image) ** 2).mean())
        changed.append(float((frame.image != whole[3].image).any(axis=-1).mean()))
print(json.dumps({"frames": len(earlier), "masks_equal": masks_equal,
                  "psnr": float(10 * np.log10(255**2 / np.mean(squared))), "changed": float(np.mean(changed))}))
"""


def test_a_frame_rendered_from_the_next_matches_a_whole_render():
    # In a process of its own, so that Blender's libraries never share the test process with PyTorch's.
    done = subprocess.run([sys.executable, "-c", COMPARE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["frames"] == 3 and found["masks_equal"]
    assert found["psnr"] > 40, found
    assert found["changed"] > 0.01, found  # frames 0-2 are not frame 3


# clevr-dataset-gen's layout, filled with svkit's own shapes and materials: a build that reads them through
# --clevr-assets must draw exactly what the default build draws.
WRITE_ASSETS = r"""
import sys
from pathlib import Path

import bpy
from sv_data.clevr.render import ClevrAssets, metal_shader, rubber_shader
from sv_data.clevr.shapes import SHAPE_MESHES

folder = Path(sys.argv[1])
for shape, name in ClevrAssets.SHAPE_FILES.items():
    data = SHAPE_MESHES[shape]()
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(data.vertices.tolist(), [], data.faces)
    mesh.shade_smooth() if data.smooth else mesh.shade_flat()
    (folder / "shapes").mkdir(parents=True, exist_ok=True)
    bpy.data.libraries.write(str(folder / "shapes" / f"{name}.blend"), {bpy.data.objects.new(name, mesh)})
for kind, name in ClevrAssets.MATERIAL_FILES.items():
    group = bpy.data.node_groups.new(name, "ShaderNodeTree")
    group.interface.new_socket("Color", in_out="INPUT", socket_type="NodeSocketColor")
    group.interface.new_socket("Shader", in_out="OUTPUT", socket_type="NodeSocketShader")
    inputs, outputs = group.nodes.new("NodeGroupInput"), group.nodes.new("NodeGroupOutput")
    shader = (rubber_shader if kind == "rubber" else metal_shader)(group, inputs.outputs["Color"])
    group.links.new(shader, outputs.inputs["Shader"])
    (folder / "materials").mkdir(parents=True, exist_ok=True)
    bpy.data.libraries.write(str(folder / "materials" / f"{name}.blend"), {group})
"""


def test_clevr_assets_are_rendered_in_place_of_svkits_own(tmp_path):
    assets = tmp_path / "clevr-dataset-gen" / "image_generation" / "data"
    done = subprocess.run([sys.executable, "-c", WRITE_ASSETS, str(assets)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    images = {}
    for name, extra in (("own", []), ("assets", ["--clevr-assets", str(tmp_path / "clevr-dataset-gen")])):
        command = [sys.executable, "-m", "cli.data", "build-clevr", "--out", str(tmp_path / name), "--n-train", "2",
                   "--n-test", "0", "--samples", "4", "--workers", "1", "--no-progress", *extra]
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        with ShardReader(tmp_path / name / "train.h5") as shard:
            images[name] = shard.read_images(range(2))
    np.testing.assert_array_equal(images["assets"], images["own"])
    recorded = json.loads((tmp_path / "assets" / "build.json").read_text())["config"]["clevr_assets"]
    assert recorded.startswith("sha256:")


def test_a_folder_without_clevr_assets_is_a_one_line_error(tmp_path):
    (tmp_path / "shapes").mkdir()
    command = [sys.executable, "-m", "cli.data", "build-clevr", "--out", str(tmp_path / "out"), "--n-train", "1",
               "--clevr-assets", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: --clevr-assets {tmp_path}: not clevr-dataset-gen's image_generation/data "
                                   "folder (shapes/SmoothCube_v2.blend is missing)")
    assert not (tmp_path / "out" / "train.h5").exists()
