"""Training-time augmentation: batched tensor ops on the batch's device, driven by a torch.Generator.

Order: horizontal flip -> random crop after zero padding -> rotation -> Gaussian noise.
Flip, crop and rotation are for images ``(N, C, H, W)``; noise applies to every kind.
The ops act on preprocessed inputs, so "zero" padding is the training mean when the
data are centred. The input batch is never modified in place.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..schemas import AugmentSpec
from .base import KINDS, DataError


def hflip(x: Tensor, flip: Tensor) -> Tensor:
    """Mirror left-right the examples of ``x`` (N, C, H, W) where the bool mask ``flip`` (N,) is set."""
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def translate(x: Tensor, dy: Tensor, dx: Tensor, pad: int) -> Tensor:
    """Shift each image by integer (dy, dx) pixels (down, right), filling with zeros: ``out[i, j] = x[i - dy, j - dx]``.

    x: (N, C, H, W); dy, dx: int64 (N,) with |dy|, |dx| <= pad. This is exactly "pad by
    ``pad``, then crop H x W at offset (pad - dy, pad - dx)".
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (pad - dy)[:, None] + torch.arange(h, device=x.device)  # (N, H) rows of padded
    cols = (pad - dx)[:, None] + torch.arange(w, device=x.device)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # advanced indices first: (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def rotate(x: Tensor, degrees: Tensor) -> Tensor:
    """Rotate each image about its centre by ``degrees`` (N,), counter-clockwise as displayed; bilinear, zero fill.

    The sampling matrix is corrected for the aspect ratio (affine_grid works in [-1, 1]
    coordinates per axis), so non-square images rotate without shearing.
    """
    n, _, h, w = x.shape
    radians = degrees.to(x.dtype) * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    zero = torch.zeros_like(cos)
    # affine_grid maps each output location (x right, y down, in [-1, 1]) to the input location
    # it samples. Sampling at R(angle) (x, y) with R = [[cos, -sin], [sin, cos]] in pixel units
    # moves the picture's bottom to its right: counter-clockwise on screen (y points down).
    theta = torch.stack([
        torch.stack([cos, -sin * (h / w), zero], dim=1),
        torch.stack([sin * (w / h), cos, zero], dim=1),
    ], dim=1)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Augmenter:
    """Random label-preserving transforms of training batches, as an AugmentSpec asks.

    ``augmenter(x, generator)`` returns a new tensor (or ``x`` itself when nothing is
    enabled); the generator must live on ``x.device`` (None: torch's global generator).
    """

    def __init__(self, spec: AugmentSpec, kind: str):
        if kind not in KINDS:
            raise ValueError(f"unknown data kind {kind!r}; expected one of {KINDS}")
        image_only = [
            name for name, on in (
                ("hflip", spec.hflip), ("crop_padding", spec.crop_padding > 0), ("rotate_degrees", spec.rotate_degrees > 0)
            ) if on
        ]
        if kind != "image" and image_only:
            raise DataError(
                f"{', '.join(image_only)} only apply to images, and this dataset is {kind} data",
                "turn them off, or use noise_std (which works for every kind)",
                culprit="augmentation",
            )
        self.spec = spec
        self.kind = kind

    @property
    def enabled(self) -> bool:
        s = self.spec
        return s.hflip or s.crop_padding > 0 or s.rotate_degrees > 0 or s.noise_std > 0

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x: (N, *input_shape) -> augmented tensor of the same shape, dtype and device."""
        if not self.enabled or x.shape[0] == 0:
            return x
        spec, n, device = self.spec, x.shape[0], x.device
        if self.kind == "image" and x.dim() != 4:
            raise ValueError(f"image augmentation expects (N, C, H, W), got shape {tuple(x.shape)}")
        if spec.hflip:
            x = hflip(x, torch.rand(n, generator=generator, device=device) < 0.5)
        if spec.crop_padding > 0:
            p = spec.crop_padding
            dy = torch.randint(-p, p + 1, (n,), generator=generator, device=device)
            dx = torch.randint(-p, p + 1, (n,), generator=generator, device=device)
            x = translate(x, dy, dx, p)
        if spec.rotate_degrees > 0:
            u = torch.rand(n, generator=generator, device=device, dtype=x.dtype)
            x = rotate(x, (2 * u - 1) * spec.rotate_degrees)
        if spec.noise_std > 0:
            x = x + spec.noise_std * torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
        return x
