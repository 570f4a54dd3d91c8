"""OpenImageDenoise, called directly on numpy images: the library that the bpy wheel ships for Cycles.

Cycles' own denoiser only ever sees what one render path traced, so a frame made of two renders would carry a
seam at the join; the compositor's Denoise node costs 3-4 times as much per 64x64 frame (it sets up the network
on every call). This filter is set up once per process and runs on the whole composite frame, always on one
thread, so that its output does not depend on how many cores a worker has.
"""
from __future__ import annotations

import ctypes
import importlib.util
from pathlib import Path

import numpy as np

from sv_data.errors import SvkitError

DEVICE_CPU = 1
FORMAT_FLOAT3 = 3
LIBRARY = "libOpenImageDenoise.so.2"


class DenoiseError(SvkitError):
    """OpenImageDenoise is missing or refused to run."""


def _library() -> ctypes.CDLL:
    spec = importlib.util.find_spec("bpy")
    path = Path(spec.origin).parent / "lib" / LIBRARY if spec and spec.origin else None
    if path is None or not path.exists():
        raise DenoiseError(f"OpenImageDenoise not found ({path or 'no bpy'}); use --no-denoise")
    lib = ctypes.CDLL(str(path))
    handle, name, image = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p
    size = ctypes.c_size_t
    signatures = {
        "oidnNewDevice": (handle, [ctypes.c_int]),
        "oidnSetDeviceInt": (None, [handle, name, ctypes.c_int]),
        "oidnSetDeviceBool": (None, [handle, name, ctypes.c_bool]),
        "oidnCommitDevice": (None, [handle]),
        "oidnGetDeviceError": (ctypes.c_int, [handle, ctypes.POINTER(ctypes.c_char_p)]),
        "oidnNewFilter": (handle, [handle, name]),
        "oidnSetSharedFilterImage": (None, [handle, name, image, ctypes.c_int, size, size, size, size, size]),
        "oidnSetFilterBool": (None, [handle, name, ctypes.c_bool]),
        "oidnCommitFilter": (None, [handle]),
        "oidnExecuteFilter": (None, [handle]),
        "oidnReleaseFilter": (None, [handle]),
        "oidnReleaseDevice": (None, [handle]),
    }
    for function, (result, arguments) in signatures.items():
        getattr(lib, function).restype = result
        getattr(lib, function).argtypes = arguments
    return lib


class Denoiser:
    """OpenImageDenoise's ray-tracing filter for float (H, W, 3) images of one size, guided by the albedo. The
    guide is taken as noisy, as Cycles' "fast" prefilter does."""

    def __init__(self, height: int, width: int):
        self._lib = _library()
        self._device = self._lib.oidnNewDevice(DEVICE_CPU)
        self._lib.oidnSetDeviceInt(self._device, b"numThreads", 1)
        self._lib.oidnSetDeviceBool(self._device, b"setAffinity", False)  # workers pin themselves
        self._lib.oidnCommitDevice(self._device)
        self._check()
        self._buffers = {name: np.zeros((height, width, 3), np.float32) for name in ("color", "albedo", "output")}
        self._filter = self._lib.oidnNewFilter(self._device, b"RT")
        for name, buffer in self._buffers.items():
            self._lib.oidnSetSharedFilterImage(self._filter, name.encode(), buffer.ctypes.data, FORMAT_FLOAT3,
                                               width, height, 0, 0, 0)
        self._lib.oidnSetFilterBool(self._filter, b"hdr", True)
        self._lib.oidnCommitFilter(self._filter)
        self._check()

    def __call__(self, color: np.ndarray, albedo: np.ndarray) -> np.ndarray:
        """The denoised scene-linear ``color``, a new array."""
        self._buffers["color"][...] = color
        self._buffers["albedo"][...] = albedo
        self._lib.oidnExecuteFilter(self._filter)
        self._check()
        return self._buffers["output"].copy()

    def _check(self) -> None:
        message = ctypes.c_char_p()
        if self._lib.oidnGetDeviceError(self._device, ctypes.byref(message)):
            raise DenoiseError(f"OpenImageDenoise: {(message.value or b'unknown error').decode()}")

    def close(self) -> None:
        if self._filter:
            self._lib.oidnReleaseFilter(self._filter)
            self._lib.oidnReleaseDevice(self._device)
            self._filter = self._device = None
