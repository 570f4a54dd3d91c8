"""Render CLEVR-SV frames with Blender's Cycles, headless, from a studio made entirely in code.

One :class:`ClevrRenderer` holds one Blender scene for the life of its process: the studio (ground curving up into
a backdrop, camera, three area lights and a sun), sixteen materials and, for each of the four object slots, one
object per shape. Rendering a frame only moves, parks and re-colours those objects, so a story costs four Cycles
renders and no set-up. Each render writes its images into uncompressed EXRs (headless Blender hands a render back
only through a file), which are read back and removed.

Only a story's last frame is rendered whole. Frame t is frame t + 1 without object t + 1, so it is made from frame
t + 1 by path tracing again only the region that this object, its shadows and any metal object mirroring it cover
(:func:`changed_region`): about a fifth of the image, which makes a story cost about two whole renders instead of
four. The region's noisy samples are put into frame t + 1's noisy image (and its albedo), and OpenImageDenoise
(:mod:`.denoise`) denoises the whole composite at once, so it never sees the region's border and leaves no seam.
"""
from __future__ import annotations

import ctypes
import math
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.util import Finalize
from pathlib import Path

import numpy as np

from sv_data.clevr.scene import (
    CAMERA_LENS_MM,
    CAMERA_POSITION,
    CAMERA_SENSOR_MM,
    COLORS,
    LIGHTS,
    MATERIALS,
    NUM_OBJECTS,
    SHAPES,
    SUN_ANGLE,
    SUN_DIRECTION,
    SUN_STRENGTH,
    Scene,
)
from sv_data.clevr.shapes import SHAPE_MESHES
from sv_data.errors import SvkitError

DEVICES = ("cpu", "gpu")
GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
GROUND_ALBEDO = 0.8
# The ground is flat up to BACKDROP_START (measured from the origin away from the camera), then curves up with
# radius BACKDROP_RADIUS into a wall: no edge of it is ever in view. Where it curves sets how dark the top of the
# frame is; these values give StoryGAN's CLEVR-SV statistics at 64x64 (mean grey 122.5, mean per-image standard
# deviation 18.8 over 160 frames; StoryGAN's: 122.5 and 18.9).
BACKDROP_START = 20.0
BACKDROP_RADIUS = 6.0
GROUND_HALF_WIDTH = 40.0
PARKING = (0.0, 0.0, -100.0)  # where unused objects wait: below the floor, which hides them from every ray
# The region of a frame that removing an object changes: the object's box grown on every side by SHADOW_REACH
# times its larger side, which holds its shadows and the light it throws on the floor nearby, but not the faint
# tails of the long shadows. Measured at 12 samples on 6 stories against 1024-sample whole renders: whole renders
# 42.41 dB; regions at 0.5 42.30 dB, at 0.75 42.33 dB for a quarter more rendering; with only 1 pixel of denoiser
# context 0.2 dB less; with every metal object, however far, 0.02 dB more for half again as much rendering.
SHADOW_REACH = 0.5

# As CLEVR's render_images.py sets it: glossy paths after a bounce are blurred, which tames the fireflies of the
# metal objects' mirrored highlights.
CLEVR_BLUR_GLOSSY = 2.0
# CLEVR's materials (the node groups of data/materials/*.blend, with the group inputs that render_images.py leaves
# at their defaults): see rubber_shader and metal_shader.
RUBBER_IOR = 1.2
RUBBER_ROUGHNESS = 0.35
RUBBER_SHEEN_ROUGHNESS = 0.6
RUBBER_GLOSS_COLOR = (0.8, 0.8, 0.8, 1.0)
METAL_ROUGHNESS = (0.4472, 0.1)  # the broad and the sharp reflection, mixed 0.4 : 0.6
METAL_SHARP_SHARE = 0.6
METAL_ANISOTROPY = 0.25

# Cycles settings, tuned for speed at 64x64: the studio needs few bounces (no glass, no volumes), and the denoiser
# removes what noise a dozen or two samples leave.
LIGHT_BOUNCES = {
    "max_bounces": 4,
    "diffuse_bounces": 2,
    "glossy_bounces": 2,
    "transmission_bounces": 0,
    "volume_bounces": 0,
    "transparent_max_bounces": 0,
}


@dataclass(frozen=True)
class RenderedFrame:
    image: np.ndarray  # uint8 (H, W, 3), sRGB
    mask: np.ndarray  # uint8 (H, W): 0 for the background, k + 1 for object k
    noisy: np.ndarray  # float32 (H, W, 3), scene-linear, before denoising: where the frame before this one starts
    albedo: np.ndarray | None  # float32 (H, W, 3): the denoiser's guide (None without denoising)


class RenderError(SvkitError):
    """Rendering cannot start (no GPU, no denoiser) or did not produce its output."""


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels from the top-left corner; x1, y1 exclusive


def _mask_box(visible: np.ndarray) -> Box:
    ys, xs = np.nonzero(visible)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def changed_region(after_mask: np.ndarray, removed: int, mirrors: list[int], reach: float = SHADOW_REACH) -> Box | None:
    """Where frame t can differ from frame t + 1, given frame t + 1's instance mask: the box of object ``removed``
    (mask value ``removed + 1``) grown by ``reach`` times its larger side, joined with the boxes of those objects of
    ``mirrors`` (the metal ones) that lie within one such side of it, and so can show it large enough to matter;
    clipped to the image. Every pixel of the removed object lies inside. None when the removed object does not
    show, and so gives no region."""
    gone = after_mask == removed + 1
    if not gone.any():
        return None
    x0, y0, x1, y1 = _mask_box(gone)
    side = max(x1 - x0, y1 - y0)
    grow = math.ceil(reach * side)
    boxes = [(x0 - grow, y0 - grow, x1 + grow, y1 + grow)]
    for k in mirrors:
        mirror = after_mask == k + 1
        if mirror.any():
            m = _mask_box(mirror)
            if m[0] < x1 + side and m[2] > x0 - side and m[1] < y1 + side and m[3] > y0 - side:
                boxes.append(m)
    height, width = after_mask.shape
    return (max(0, min(b[0] for b in boxes)), max(0, min(b[1] for b in boxes)),
            min(width, max(b[2] for b in boxes)), min(height, max(b[3] for b in boxes)))


def srgb_bytes(linear: np.ndarray) -> np.ndarray:
    """Scene-linear RGB -> 8-bit sRGB, as Blender's "Standard" view transform writes it."""
    c = np.clip(linear, 0.0, 1.0)
    encoded = np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    return np.rint(encoded * 255).astype(np.uint8)


class ClevrRenderer:
    """One Blender session, reused for every frame this process renders."""

    def __init__(self, image_size: int, samples: int, denoise: bool, device: str = "cpu", threads: int = 0,
                 clevr_assets: Path | None = None):
        """``clevr_assets``: clevr-dataset-gen's ``image_generation/data`` folder, whose shapes and materials are
        then rendered instead of svkit's own (:class:`ClevrAssets`)."""
        bpy = import_bpy()

        self.bpy = bpy
        self.image_size = image_size
        self._denoiser = None
        if denoise:
            from sv_data.clevr.denoise import Denoiser

            self._denoiser = Denoiser(image_size, image_size)
        self._assets = None if clevr_assets is None else ClevrAssets(clevr_assets)
        self._tmp = Path(tempfile.mkdtemp(prefix="svkit-clevr-"))
        # Also at the exit of a pool worker, which skips atexit handlers but runs multiprocessing's finalizers.
        Finalize(self, shutil.rmtree, args=(str(self._tmp),), kwargs={"ignore_errors": True}, exitpriority=10)
        bpy.ops.wm.read_factory_settings(use_empty=True)
        self.scene = bpy.context.scene
        self._configure(samples, denoise, device, threads)
        self._build_studio()
        self._materials = self._build_materials()
        self._objects = self._build_objects()
        self._build_output()

    # ---- set-up -------------------------------------------------------------------------------------------
    def _configure(self, samples: int, denoise: bool, device: str, threads: int) -> None:
        scene, size = self.scene, self.image_size
        render = scene.render
        render.engine = "CYCLES"
        render.resolution_x = render.resolution_y = size
        render.resolution_percentage = 100
        # A square image of CLEVR's 4:3 frame: each pixel is 4/3 as wide as it is tall.
        render.pixel_aspect_x, render.pixel_aspect_y = 4.0, 3.0
        render.use_persistent_data = True
        render.film_transparent = False
        if threads > 0:
            render.threads_mode = "FIXED"
            render.threads = threads
        scene.view_settings.view_transform = "Standard"
        cycles = scene.cycles
        cycles.device = "GPU" if device == "gpu" else "CPU"
        if device == "gpu":
            enable_gpu()
        cycles.samples = samples
        cycles.use_adaptive_sampling = False
        cycles.seed = 0
        cycles.use_animated_seed = False
        cycles.caustics_reflective = cycles.caustics_refractive = False
        cycles.blur_glossy = CLEVR_BLUR_GLOSSY
        for name, value in LIGHT_BOUNCES.items():
            setattr(cycles, name, value)
        # Cycles' own denoiser would see only the region a render path traces: sv_data.clevr.denoise denoises the
        # whole composite frame instead.
        cycles.use_denoising = False
        if denoise:
            # The albedo guide. Without the normal guide OpenImageDenoise smooths the metal objects better: against
            # 1024-sample renders, 8 samples gave 41.9 dB with albedo and normal, 42.1 dB with albedo alone.
            scene.view_layers[0].cycles.denoising_store_passes = True
        scene.view_layers[0].use_pass_object_index = True

    def _aim(self, obj, position) -> None:
        """Put ``obj`` (a camera or light, which look down their local -Z) at ``position``, facing the origin."""
        from mathutils import Vector

        obj.location = position
        obj.rotation_euler = (-Vector(position)).to_track_quat("-Z", "Y").to_euler()

    def _link(self, name: str, data):
        obj = self.bpy.data.objects.new(name, data)
        self.scene.collection.objects.link(obj)
        return obj

    def _build_studio(self) -> None:
        bpy = self.bpy
        world = bpy.data.worlds.new("black")
        world.use_nodes = False
        world.color = (0.0, 0.0, 0.0)
        self.scene.world = world

        camera = bpy.data.cameras.new("camera")
        camera.lens = CAMERA_LENS_MM
        camera.sensor_width = CAMERA_SENSOR_MM
        camera.sensor_fit = "HORIZONTAL"
        self.camera = self._link("camera", camera)
        self.scene.camera = self.camera

        self.lights = []
        for spec in LIGHTS:
            light = bpy.data.lights.new(spec.name, "AREA")
            light.shape = "SQUARE"
            light.size = spec.size
            light.energy = spec.watts
            light.color = spec.color
            self.lights.append(self._link(spec.name, light))
        sun = bpy.data.lights.new("sun", "SUN")
        sun.energy = SUN_STRENGTH
        sun.angle = SUN_ANGLE
        sun_object = self._link("sun", sun)
        from mathutils import Vector

        sun_object.rotation_euler = Vector(SUN_DIRECTION).to_track_quat("-Z", "Y").to_euler()

        ground = self._link("ground", self._ground_mesh())
        material = bpy.data.materials.new("ground")
        material.use_nodes = True
        nodes = material.node_tree.nodes
        nodes.clear()
        diffuse = nodes.new("ShaderNodeBsdfDiffuse")
        diffuse.inputs["Color"].default_value = (GROUND_ALBEDO, GROUND_ALBEDO, GROUND_ALBEDO, 1.0)
        output = nodes.new("ShaderNodeOutputMaterial")
        material.node_tree.links.new(diffuse.outputs["BSDF"], output.inputs["Surface"])
        ground.data.materials.append(material)

    def _ground_mesh(self):
        """The floor and the backdrop as one smooth sheet, curving up away from the (base) camera."""
        away = -np.asarray(CAMERA_POSITION[:2]) / np.linalg.norm(CAMERA_POSITION[:2])
        side = np.array([away[1], -away[0]])
        arc = [(BACKDROP_START + BACKDROP_RADIUS * math.sin(a), BACKDROP_RADIUS * (1 - math.cos(a)))
               for a in np.linspace(0, math.pi / 2, 17)]
        profile = [(-40.0, 0.0), *arc, (BACKDROP_START + BACKDROP_RADIUS, 40.0)]  # (distance away, height)
        vertices = []
        for s, z in profile:
            for w in (-GROUND_HALF_WIDTH, GROUND_HALF_WIDTH):
                x, y = s * away + w * side
                vertices.append((float(x), float(y), float(z)))
        faces = [(2 * i, 2 * i + 1, 2 * i + 3, 2 * i + 2) for i in range(len(profile) - 1)]
        mesh = self.bpy.data.meshes.new("ground")
        mesh.from_pydata(vertices, [], faces)
        mesh.shade_smooth()
        # Make the faces point up (towards the camera side).
        if mesh.polygons[0].normal.z < 0:
            mesh.flip_normals()
        return mesh

    def _build_materials(self) -> dict[tuple[int, int], object]:
        """(colour index, material index) -> material. Colours are CLEVR's 0-255 values used as linear RGB / 255."""
        materials = {}
        for c, rgb in enumerate(COLORS.values()):
            color = (*(v / 255 for v in rgb), 1.0)
            for m, kind in enumerate(MATERIALS):
                material = self.bpy.data.materials.new(f"{kind}-{c}")
                material.use_nodes = True
                tree = material.node_tree
                tree.nodes.clear()
                if self._assets is None:
                    surface = (rubber_shader if kind == "rubber" else metal_shader)(tree, color)
                else:
                    surface = self._assets.material(tree, kind, color)
                tree.links.new(surface, tree.nodes.new("ShaderNodeOutputMaterial").inputs["Surface"])
                materials[c, m] = material
        return materials

    def _shape_meshes(self) -> list:
        if self._assets is not None:
            return [self._assets.mesh(name) for name in SHAPES]
        meshes = []
        for name in SHAPES:
            data = SHAPE_MESHES[name]()
            mesh = self.bpy.data.meshes.new(name)
            mesh.from_pydata(data.vertices.tolist(), [], data.faces)
            if data.smooth:
                mesh.shade_smooth()
            else:
                mesh.shade_flat()
            meshes.append(mesh)
        return meshes

    def _build_objects(self) -> list[list]:
        """objects[k][shape]: one object per slot and shape (the slots share each shape's mesh), parked under the
        floor until a story shows it: moving objects is all that changes between renders, which Cycles syncs
        quickly."""
        meshes = self._shape_meshes()
        for mesh in meshes:
            mesh.materials.clear()
            mesh.materials.append(None)
        objects = []
        for k in range(NUM_OBJECTS):
            row = []
            for shape, mesh in zip(SHAPES, meshes):
                obj = self._link(f"object{k}-{shape}", mesh)
                obj.pass_index = k + 1
                obj.material_slots[0].link = "OBJECT"
                obj.location = PARKING
                row.append(obj)
            objects.append(row)
        return objects

    def _build_output(self) -> None:
        """Compositor: the noisy image with the object index as its alpha, and the albedo (the denoiser's guide),
        each into a float EXR per render."""
        scene = self.scene
        scene.use_nodes = True
        tree = scene.node_tree
        tree.nodes.clear()
        layers = tree.nodes.new("CompositorNodeRLayers")
        with_index = tree.nodes.new("CompositorNodeSetAlpha")
        with_index.mode = "REPLACE_ALPHA"
        tree.links.new(layers.outputs["Image"], with_index.inputs["Image"])
        tree.links.new(layers.outputs["IndexOB"], with_index.inputs["Alpha"])
        written = {"noisy": with_index.outputs["Image"]}
        if self._denoiser is not None:
            written["albedo"] = layers.outputs["Denoising Albedo"]
        out = tree.nodes.new("CompositorNodeOutputFile")
        out.base_path = str(self._tmp)
        out.format.file_format = "OPEN_EXR"
        out.format.color_depth = "32"
        out.format.exr_codec = "NONE"
        out.format.color_mode = "RGBA"
        for i, (name, socket) in enumerate(written.items()):
            if i == 0:  # the node comes with one slot (removing it leaks memory in Blender 4.5)
                out.file_slots[0].path = name
            else:
                out.file_slots.new(name)
            tree.links.new(socket, out.inputs[i])
        self._outputs = {name: self._tmp / f"{name}{scene.frame_current:04d}.exr" for name in written}

    # ---- per story ----------------------------------------------------------------------------------------
    def set_scene(self, scene: Scene) -> None:
        """Move the camera and lights to this story's jittered positions and dress the object slots."""
        self._aim(self.camera, scene.studio.camera)
        for light, position in zip(self.lights, scene.studio.lights):
            self._aim(light, position)
        self._scene = scene
        for k, obj in enumerate(scene.objects):
            active = self._objects[k][obj.shape]
            active.rotation_euler = (0.0, 0.0, math.radians(obj.yaw))
            active.scale = (obj.scale,) * 3
            active.material_slots[0].material = self._materials[obj.color, obj.material]

    def render_frame(self, frame: int) -> RenderedFrame:
        """Frame ``frame`` of the current scene (objects 0..frame shown; -1: none), rendered whole."""
        self._show(frame)
        return self._render(None, None)

    def render_earlier_frames(self, last: RenderedFrame) -> list[RenderedFrame]:
        """Frames 0..n-2 of the current scene, given ``last``, its rendered last frame: each is made from the frame
        after it by path tracing again only the region in which the two differ (:func:`changed_region`), or whole
        when that region is unknown."""
        frames = [last]
        for t in reversed(range(len(self._scene.objects) - 1)):
            after = frames[0]
            mirrors = [k for k in range(t + 1) if MATERIALS[self._scene.objects[k].material] == "metal"]
            region = changed_region(after.mask, t + 1, mirrors)
            self._show(t)
            frames.insert(0, self._render(region, after))
        return frames[:-1]

    def _show(self, frame: int) -> None:
        """Objects 0..frame at their places, every other object parked."""
        for k, row in enumerate(self._objects):
            shown = self._scene.objects[k] if k <= frame and k < len(self._scene.objects) else None
            for shape, obj in enumerate(row):
                where = (shown.x, shown.y, shown.scale) if shown is not None and shown.shape == shape else PARKING
                if tuple(obj.location) != where:
                    obj.location = where

    def _render(self, region: Box | None, base: RenderedFrame | None) -> RenderedFrame:
        """One Cycles render: of the whole image, or of ``region`` only, put into ``base``'s noisy image, albedo
        and mask; then the whole composite is denoised."""
        size = self.image_size
        render = self.scene.render
        render.use_border = region is not None
        inside = np.ones((size, size, 1), bool)
        if region is not None:
            x0, y0, x1, y1 = region
            inside[:] = False
            inside[y0:y1, x0:x1] = True
            render.use_crop_to_border = False
            # Blender's border runs from the bottom-left corner, in fractions of the image.
            render.border_min_x, render.border_max_x = x0 / size, x1 / size
            render.border_min_y, render.border_max_y = 1 - y1 / size, 1 - y0 / size
        with _quiet_stdout():
            self.bpy.ops.render.render(write_still=False)
        passes = {}
        for name, path in self._outputs.items():
            passes[name] = _read_exr(path)
            path.unlink()
        noisy, mask = passes["noisy"][..., :3], np.rint(passes["noisy"][..., 3]).astype(np.uint8)
        albedo = passes["albedo"][..., :3] if self._denoiser is not None else None
        if region is not None:
            noisy = np.where(inside, noisy, base.noisy)
            mask = np.where(inside[..., 0], mask, base.mask)
            if albedo is not None:
                albedo = np.where(inside, albedo, base.albedo)
        image = noisy if self._denoiser is None else self._denoiser(noisy, albedo)
        return RenderedFrame(srgb_bytes(image), mask, noisy, albedo)

    def close(self) -> None:
        if self._denoiser is not None:
            self._denoiser.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


def rubber_shader(tree, color):
    """CLEVR's Rubber: a diffuse base that turns into a sheen towards grazing angles (mixed by Fresnel at IOR
    RUBBER_IOR + 0.5), under an uncoloured Beckmann gloss of roughness sqrt(RUBBER_ROUGHNESS) mixed in by Fresnel
    at RUBBER_IOR. Returns the shader socket."""
    diffuse = _node(tree, "ShaderNodeBsdfDiffuse", Color=color, Roughness=0.0)
    sheen = _node(tree, "ShaderNodeBsdfSheen", {"distribution": "ASHIKHMIN"}, Color=color,
                  Roughness=RUBBER_SHEEN_ROUGHNESS)
    base = _mix(tree, _node(tree, "ShaderNodeFresnel", IOR=RUBBER_IOR + 0.5), diffuse, sheen)
    gloss = _node(tree, "ShaderNodeBsdfAnisotropic", {"distribution": "BECKMANN"}, Color=RUBBER_GLOSS_COLOR,
                  Roughness=math.sqrt(RUBBER_ROUGHNESS), Anisotropy=0.0)
    return _mix(tree, _node(tree, "ShaderNodeFresnel", IOR=RUBBER_IOR), base, gloss)


def metal_shader(tree, color):
    """CLEVR's MyMetal: two anisotropic GGX reflections tinted by the colour, one broad and one sharp, and no
    diffuse part. Returns the shader socket."""
    broad, sharp = (_node(tree, "ShaderNodeBsdfAnisotropic", {"distribution": "GGX"}, Color=color, Roughness=r,
                          Anisotropy=METAL_ANISOTROPY) for r in METAL_ROUGHNESS)
    return _mix(tree, METAL_SHARP_SHARE, broad, sharp)


def _node(tree, kind: str, settings: dict | None = None, **inputs):
    """A new shader node's first output; ``inputs`` are values, or output sockets to link from."""
    node = tree.nodes.new(kind)
    for name, value in (settings or {}).items():
        setattr(node, name, value)
    for name, value in inputs.items():
        _feed(tree, node.inputs[name], value)
    return node.outputs[0]


def _mix(tree, fac, first, second):
    node = tree.nodes.new("ShaderNodeMixShader")
    _feed(tree, node.inputs["Fac"], fac)
    tree.links.new(first, node.inputs[1])
    tree.links.new(second, node.inputs[2])
    return node.outputs[0]


def _feed(tree, socket, value) -> None:
    if hasattr(value, "links"):  # an output socket
        tree.links.new(value, socket)
    else:
        socket.default_value = value


class ClevrAssets:
    """The original shapes and materials of clevr-dataset-gen, read from its ``image_generation/data`` folder (or a
    checkout holding it): ``shapes/{SmoothCube_v2,Sphere,SmoothCylinder}.blend`` and
    ``materials/{Rubber,MyMetal}.blend``, each holding one object or node group of the file's name."""

    SHAPE_FILES = {"cube": "SmoothCube_v2", "sphere": "Sphere", "cylinder": "SmoothCylinder"}
    MATERIAL_FILES = {"rubber": "Rubber", "metal": "MyMetal"}

    def __init__(self, folder: Path):
        self.folder = find_clevr_assets(folder)
        self._groups = {}

    def mesh(self, shape: str):
        name = self.SHAPE_FILES[shape]
        return self._load(Path("shapes", name + ".blend"), "objects", name).data.copy()

    def material(self, tree, kind: str, color):
        """A group node of the material's node group with its colour set (as render_images.py does); returns its
        shader socket."""
        name = self.MATERIAL_FILES[kind]
        if name not in self._groups:
            self._groups[name] = self._load(Path("materials", name + ".blend"), "node_groups", name)
        group = tree.nodes.new("ShaderNodeGroup")
        group.node_tree = self._groups[name]
        group.inputs["Color"].default_value = color
        return group.outputs[0]

    def _load(self, relative: Path, collection: str, name: str):
        import bpy

        path = self.folder / relative
        with bpy.data.libraries.load(str(path)) as (source, target):
            if name not in getattr(source, collection):
                raise RenderError(f"{path}: holds no {collection[:-1].replace('_', ' ')} named {name}")
            setattr(target, collection, [name])
        return getattr(target, collection)[0]


def find_clevr_assets(folder: Path) -> Path:
    """The folder holding ``shapes/`` and ``materials/`` of clevr-dataset-gen: ``folder`` itself, or its
    ``data`` or ``image_generation/data``. One-line error naming the first missing file otherwise."""
    folder = Path(folder)
    needed = [Path("shapes", f + ".blend") for f in ClevrAssets.SHAPE_FILES.values()]
    needed += [Path("materials", f + ".blend") for f in ClevrAssets.MATERIAL_FILES.values()]
    for candidate in (folder, folder / "data", folder / "image_generation" / "data"):
        if all((candidate / f).is_file() for f in needed):
            return candidate
    missing = next(f for f in needed if not (folder / f).is_file())
    raise SvkitError(f"--clevr-assets {folder}: not clevr-dataset-gen's image_generation/data folder "
                     f"({missing} is missing)")


@contextmanager
def _quiet_stdout():
    """Send what Blender prints during a render (a status line per step, "Saved: ...") to /dev/null: it writes to
    file descriptor 1 from C, past Python's sys.stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        ctypes.CDLL(None).fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _read_exr(path: Path) -> np.ndarray:
    """float32 (H, W, 4) RGBA of an EXR the compositor wrote."""
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # read when OpenCV first decodes an EXR
    import cv2

    if not path.exists():
        raise RenderError(f"{path}: Cycles wrote no image")
    bgra = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgra is None:
        raise RenderError(f"{path}: cannot read the rendered EXR")
    return bgra[..., [2, 1, 0, 3]]


def import_bpy():
    """``import bpy``, also in a process spawned by one that had imported it: such a process inherits the
    parent's ``sys.path``, where Blender put its own ``scripts/modules`` folder, whose ``bpy`` package would then
    shadow the real module."""
    if "bpy" not in sys.modules:
        sys.path[:] = [p for p in sys.path if not {"bpy", "scripts"} <= set(Path(p).parts)]
    import bpy

    return bpy


def enable_gpu() -> str:
    """Switch Cycles to the first GPU backend that has a device; returns the backend's name."""
    bpy = import_bpy()

    prefs = bpy.context.preferences.addons["cycles"].preferences
    for backend in GPU_BACKENDS:
        try:
            prefs.compute_device_type = backend
        except TypeError:  # not built into this bpy
            continue
        prefs.get_devices()
        gpus = [d for d in prefs.devices if d.type == backend]
        if gpus:
            for d in prefs.devices:
                d.use = d.type == backend
            return backend
    raise RenderError(f"--device gpu: Cycles found no GPU (tried {', '.join(GPU_BACKENDS)}); use --device cpu")
