"""Render CLEVR-SV frames with Blender's Cycles, headless, from a studio made entirely in code.

One :class:`ClevrRenderer` holds one Blender scene for the life of its process: the studio (ground curving up into
a backdrop, camera, three area lights and a sun), sixteen materials and, for each of the four object slots, one
object per shape. Rendering a frame only moves, parks and re-colours those objects, so a story costs four Cycles
renders and no set-up. Each render writes the denoised image and the object-index pass into one
uncompressed EXR (headless Blender hands a render back only through a file), which is read back and removed.

Only a story's last frame is rendered whole. Frame t is frame t + 1 without object t + 1, so it is made from frame
t + 1 by rendering again only the region that this object, its shadows and any metal object mirroring it cover
(:func:`changed_region`): about a fifth of the image, which makes a story cost about two whole renders instead of
four at nearly the same fidelity (docs/benchmarks.md).
"""
from __future__ import annotations

import ctypes
import math
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
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
# Pixels rendered around that region and then dropped: the denoiser works near a region's edge without seeing
# past it, so its last pixels differ from a whole render's.
DENOISE_CONTEXT = 2

# Cycles settings, tuned for speed at 64x64: the studio needs few bounces (no glass, no volumes), and the denoiser
# removes what noise a dozen samples leave.
LIGHT_BOUNCES = {
    "max_bounces": 4,
    "diffuse_bounces": 2,
    "glossy_bounces": 2,
    "transmission_bounces": 0,
    "volume_bounces": 0,
    "transparent_max_bounces": 0,
}


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

    def __init__(self, image_size: int, samples: int, denoise: bool, device: str = "cpu", threads: int = 0):
        bpy = import_bpy()

        self.bpy = bpy
        self.image_size = image_size
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
        cycles.blur_glossy = 1.0
        for name, value in LIGHT_BOUNCES.items():
            setattr(cycles, name, value)
        cycles.use_denoising = denoise
        if denoise:
            import _cycles

            if not _cycles.with_openimagedenoise:
                raise RenderError("this bpy build has no OpenImageDenoise; use --no-denoise")
            cycles.denoiser = "OPENIMAGEDENOISE"
            # Without the normal guide OpenImageDenoise smooths the metal objects better: against 1024-sample
            # renders, 8 samples gave 41.9 dB with albedo and normal, 42.1 dB with albedo alone.
            cycles.denoising_input_passes = "RGB_ALBEDO"
            cycles.denoising_prefilter = "FAST"
            cycles.denoising_use_gpu = device == "gpu"
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
        bpy = self.bpy
        materials = {}
        for c, rgb in enumerate(COLORS.values()):
            color = (*(v / 255 for v in rgb), 1.0)
            for m, kind in enumerate(MATERIALS):
                material = bpy.data.materials.new(f"{kind}-{c}")
                material.use_nodes = True
                bsdf = material.node_tree.nodes["Principled BSDF"]
                bsdf.inputs["Base Color"].default_value = color
                if kind == "rubber":  # matte, a faint sheen and a weak uncoloured highlight
                    bsdf.inputs["Roughness"].default_value = 0.7
                    bsdf.inputs["Specular IOR Level"].default_value = 0.25
                    bsdf.inputs["Sheen Weight"].default_value = 0.2
                else:  # a coloured mirror, slightly rough, without a diffuse part
                    bsdf.inputs["Metallic"].default_value = 1.0
                    bsdf.inputs["Roughness"].default_value = 0.25
                materials[c, m] = material
        return materials

    def _shape_meshes(self) -> list:
        import bmesh

        meshes = []
        for name in SHAPES:
            bm = bmesh.new()
            if name == "cube":
                bmesh.ops.create_cube(bm, size=2.0)
                bmesh.ops.bevel(bm, geom=list(bm.edges), offset=0.08, segments=3, affect="EDGES", profile=0.5)
                for face in bm.faces:  # the six big faces flat, the rounded edges smooth
                    face.smooth = face.calc_area() < 1.0
            elif name == "sphere":
                bmesh.ops.create_uvsphere(bm, u_segments=32, v_segments=16, radius=1.0)
                for face in bm.faces:
                    face.smooth = True
            else:
                bmesh.ops.create_cone(bm, cap_ends=True, segments=32, radius1=1.0, radius2=1.0, depth=2.0)
                for face in bm.faces:  # the side smooth, the caps flat
                    face.smooth = len(face.verts) == 4
            mesh = self.bpy.data.meshes.new(name)
            bm.to_mesh(mesh)
            bm.free()
            mesh.materials.append(None)
            meshes.append(mesh)
        return meshes

    def _build_objects(self) -> list[list]:
        """objects[k][shape]: one object per slot and shape (each with its own mesh), parked under the floor until a
        story shows it: moving objects is all that changes between renders, which Cycles syncs quickly."""
        meshes = self._shape_meshes()
        objects = []
        for k in range(NUM_OBJECTS):
            row = []
            for shape, mesh in zip(SHAPES, meshes):
                obj = self._link(f"object{k}-{shape}", mesh.copy())
                obj.pass_index = k + 1
                obj.material_slots[0].link = "OBJECT"
                obj.location = PARKING
                row.append(obj)
            objects.append(row)
        return objects

    def _build_output(self) -> None:
        """Compositor: the image with the object index as its alpha, into one float EXR per render."""
        scene = self.scene
        scene.use_nodes = True
        tree = scene.node_tree
        tree.nodes.clear()
        layers = tree.nodes.new("CompositorNodeRLayers")
        combine = tree.nodes.new("CompositorNodeSetAlpha")
        combine.mode = "REPLACE_ALPHA"
        image = layers.outputs["Image"]  # denoised when denoising is on
        tree.links.new(image, combine.inputs["Image"])
        tree.links.new(layers.outputs["IndexOB"], combine.inputs["Alpha"])
        out = tree.nodes.new("CompositorNodeOutputFile")
        out.base_path = str(self._tmp)
        out.format.file_format = "OPEN_EXR"
        out.format.color_depth = "32"
        out.format.exr_codec = "NONE"
        out.format.color_mode = "RGBA"
        out.file_slots[0].path = "frame"
        tree.links.new(combine.outputs[0], out.inputs[0])
        self._output = self._tmp / f"frame{scene.frame_current:04d}.exr"

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

    def render_frame(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``frame`` of the current scene (objects 0..frame shown; -1: none), rendered whole: uint8 RGB
        (H, W, 3) and the instance mask uint8 (H, W) with 0 for the background and k + 1 for object k."""
        self._show(frame)
        return self._render_region(None)

    def render_earlier_frames(self, last: tuple[np.ndarray, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Frames 0..n-2 of the current scene, as :meth:`render_frame` gives them, given ``last``, its rendered last
        frame: each is made from the frame after it by rendering again only the region in which the two differ
        (:func:`changed_region`), or whole when that region is unknown."""
        frames = [last]
        for t in reversed(range(len(self._scene.objects) - 1)):
            image, mask = frames[0]
            mirrors = [k for k in range(t + 1) if MATERIALS[self._scene.objects[k].material] == "metal"]
            region = changed_region(mask, t + 1, mirrors)
            if region is None:
                frames.insert(0, self.render_frame(t))
                continue
            self._show(t)
            x0, y0, x1, y1 = region
            new_image, new_mask = self._render_region(region)
            image, mask = image.copy(), mask.copy()  # the region holds every pixel of the removed object
            image[y0:y1, x0:x1], mask[y0:y1, x0:x1] = new_image[y0:y1, x0:x1], new_mask[y0:y1, x0:x1]
            frames.insert(0, (image, mask))
        return frames[:-1]

    def _show(self, frame: int) -> None:
        """Objects 0..frame at their places, every other object parked."""
        for k, row in enumerate(self._objects):
            shown = self._scene.objects[k] if k <= frame and k < len(self._scene.objects) else None
            for shape, obj in enumerate(row):
                where = (shown.x, shown.y, shown.scale) if shown is not None and shown.shape == shape else PARKING
                if tuple(obj.location) != where:
                    obj.location = where

    def _render_region(self, region: Box | None) -> tuple[np.ndarray, np.ndarray]:
        """One Cycles render of the whole image, or of ``region`` and DENOISE_CONTEXT pixels around it (the rest
        of the returned image is then black)."""
        render = self.scene.render
        render.use_border = region is not None
        if region is not None:
            size = self.image_size
            x0, y0, x1, y1 = (min(size, max(0, v + d)) for v, d in zip(region, (-DENOISE_CONTEXT, -DENOISE_CONTEXT,
                                                                                DENOISE_CONTEXT, DENOISE_CONTEXT)))
            render.use_crop_to_border = False
            # Blender's border runs from the bottom-left corner, in fractions of the image.
            render.border_min_x, render.border_max_x = x0 / size, x1 / size
            render.border_min_y, render.border_max_y = 1 - y1 / size, 1 - y0 / size
        with _quiet_stdout():
            self.bpy.ops.render.render(write_still=False)
        pixels = _read_exr(self._output)
        self._output.unlink()
        return srgb_bytes(pixels[..., :3]), np.rint(pixels[..., 3]).astype(np.uint8)

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


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
