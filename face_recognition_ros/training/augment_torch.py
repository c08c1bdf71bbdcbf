"""The augmentation of ``augment.py``, batched in torch, for training on a GPU.

``augment.augment_face`` perturbs one crop at a time with OpenCV in the data loader's workers; on a GPU
that loop, not the network, would set the pace. ``augment_batch`` draws the same perturbations from the
same ``AugmentConfig`` for a whole batch already on the device. The differences, all small: the JPEG
step quantises 8x8 DCT blocks with the standard tables (no chroma subsampling, no entropy coding), the
low-resolution step uses four shrink factors per batch rather than one per face, and rounding to
integers happens once at the end rather than after every step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .augment import (
    BLUR_SIGMA,
    DOWNSCALE_FACTOR,
    ERASE_AREA,
    ERASE_ASPECT,
    GRAY_WEIGHTS,
    JPEG_QUALITY,
    NOISE_SIGMA,
)
from .config import AugmentConfig

_DOWNSCALE_BUCKETS = 4
_BLUR_RADIUS = math.ceil(3 * BLUR_SIGMA[1])

# The JPEG standard's (Annex K) luminance and chrominance quantisation tables, quality 50.
_LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
_CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _chosen(probability: float, n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """Indices of the faces a step with this probability applies to."""
    return torch.nonzero(torch.rand(n, generator=generator, device=device) < probability).flatten()


def _gray(images: torch.Tensor) -> torch.Tensor:
    weights = images.new_tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _geometry(images: torch.Tensor, config: AugmentConfig, generator, flip: torch.Tensor) -> torch.Tensor:
    """Rotation, scale and shift about the centre (landmark noise of the detector) and the mirror
    image, in one resampling with replicated borders."""
    n, _, height, width = images.shape
    device = images.device
    angle = torch.deg2rad(_uniform(n, -config.rotate_deg, config.rotate_deg, generator, device))
    scale = 1.0 + _uniform(n, -config.scale, config.scale, generator, device)
    shift_x = _uniform(n, -config.shift_px, config.shift_px, generator, device) * 2.0 / width
    shift_y = _uniform(n, -config.shift_px, config.shift_px, generator, device) * 2.0 / height
    mirror = torch.where(flip, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # Sampling coordinates are normalised to [-1, 1] per axis: the rotation is expressed in pixels.
    aspect = height / width
    theta = torch.stack([
        torch.stack([cos * mirror, -sin * aspect, -shift_x], dim=1),
        torch.stack([sin * mirror / aspect, cos, -shift_y], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _colour(images: torch.Tensor, config: AugmentConfig, generator) -> torch.Tensor:
    n, device = images.shape[0], images.device
    gray_faces = (torch.rand(n, generator=generator, device=device) < config.grayscale).view(n, 1, 1, 1)
    gray = _gray(images)
    if config.saturation:
        factor = 1.0 + _uniform(n, -config.saturation, config.saturation, generator, device).view(n, 1, 1, 1)
        images = torch.where(gray_faces, gray.expand_as(images), gray + (images - gray) * factor)
    else:
        images = torch.where(gray_faces, gray.expand_as(images), images)
    if config.contrast:
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        factor = 1.0 + _uniform(n, -config.contrast, config.contrast, generator, device).view(n, 1, 1, 1)
        images = mean + (images - mean) * factor
    if config.brightness:
        images = images * (1.0 + _uniform(n, -config.brightness, config.brightness, generator, device).view(n, 1, 1, 1))
    return images.clamp(0.0, 255.0)


def _blur(images: torch.Tensor, generator) -> torch.Tensor:
    """A Gaussian blur with a sigma of its own per face: separable, grouped convolutions."""
    n, channels, height, width = images.shape
    sigma = _uniform(n, *BLUR_SIGMA, generator, images.device).view(n, 1)
    offsets = torch.arange(-_BLUR_RADIUS, _BLUR_RADIUS + 1, device=images.device, dtype=images.dtype).view(1, -1)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)  # (n*c, k)
    flat = F.pad(images.reshape(1, n * channels, height, width), (_BLUR_RADIUS,) * 4, mode="replicate")
    flat = F.conv2d(flat, kernel.view(n * channels, 1, 1, -1), groups=n * channels)
    flat = F.conv2d(flat, kernel.view(n * channels, 1, -1, 1), groups=n * channels)
    return flat.view(n, channels, height, width)


def _downscale(images: torch.Tensor, generator) -> torch.Tensor:
    """Shrink to 35-90% of the side (anti-aliased) and back: faces seen from afar."""
    n, _, height, width = images.shape
    bucket = torch.randint(0, _DOWNSCALE_BUCKETS, (n,), generator=generator, device=images.device)
    out = images.clone()
    for index in range(_DOWNSCALE_BUCKETS):
        members = torch.nonzero(bucket == index).flatten()
        if members.numel() == 0:
            continue
        low, high = DOWNSCALE_FACTOR
        factor = low + (high - low) * (index + 0.5) / _DOWNSCALE_BUCKETS
        size = (max(8, round(height * factor)), max(8, round(width * factor)))
        small = F.interpolate(images[members], size=size, mode="bilinear", antialias=True, align_corners=False)
        out[members] = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
    return out


def _dct_matrix(device, dtype) -> torch.Tensor:
    k = torch.arange(8, device=device, dtype=dtype).view(8, 1)
    x = torch.arange(8, device=device, dtype=dtype).view(1, 8)
    matrix = torch.cos((2 * x + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    matrix[0] /= math.sqrt(2)
    return matrix


def jpeg_tables(quality: torch.Tensor) -> torch.Tensor:
    """(n,) qualities 1..100 -> (n, 3, 8, 8) quantisation steps for Y, Cb, Cr (the IJG scaling)."""
    quality = quality.clamp(1, 100).to(torch.float32).view(-1, 1, 1)
    scale = torch.where(quality < 50, 5000.0 / quality, 200.0 - 2.0 * quality)
    base = torch.tensor([_LUMA_TABLE, _CHROMA_TABLE, _CHROMA_TABLE], device=quality.device, dtype=torch.float32)
    tables = torch.floor((base.view(1, 3, 64) * scale + 50.0) / 100.0).clamp(1.0, 255.0)
    return tables.view(-1, 3, 8, 8)


def _jpeg(images: torch.Tensor, generator) -> torch.Tensor:
    """The blocking and ringing of a JPEG at quality 30-90: 8x8 DCT coefficients of Y, Cb and Cr
    rounded to the standard tables' steps."""
    n, _, height, width = images.shape
    quality = torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (n,), generator=generator, device=images.device)
    pad_h, pad_w = (-height) % 8, (-width) % 8
    padded = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else images
    r, g, b = padded[:, 0], padded[:, 1], padded[:, 2]
    ycc = torch.stack([
        0.299 * r + 0.587 * g + 0.114 * b - 128.0,
        -0.168736 * r - 0.331264 * g + 0.5 * b,
        0.5 * r - 0.418688 * g - 0.081312 * b,
    ], dim=1)
    blocks_h, blocks_w = ycc.shape[2] // 8, ycc.shape[3] // 8
    blocks = ycc.view(n, 3, blocks_h, 8, blocks_w, 8).permute(0, 1, 2, 4, 3, 5)  # n, c, bh, bw, 8, 8
    dct = _dct_matrix(images.device, images.dtype)
    coefficients = dct @ blocks @ dct.T
    steps = jpeg_tables(quality).to(images.dtype).view(n, 3, 1, 1, 8, 8)
    blocks = dct.T @ (torch.round(coefficients / steps) * steps) @ dct
    ycc = blocks.permute(0, 1, 2, 4, 3, 5).reshape(n, 3, blocks_h * 8, blocks_w * 8)
    y, cb, cr = ycc[:, 0] + 128.0, ycc[:, 1], ycc[:, 2]
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=1)
    return rgb[:, :, :height, :width].clamp(0.0, 255.0)


def _erase(images: torch.Tensor, generator) -> torch.Tensor:
    """One rectangle of 3-20% of the crop, aspect 1:2..2:1, filled with one random colour (occlusion)."""
    n, _, height, width = images.shape
    device = images.device
    area = _uniform(n, *ERASE_AREA, generator, device) * width * height
    aspect = torch.exp(_uniform(n, math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1]), generator, device))
    box_w = torch.sqrt(area * aspect).round().clamp(1, width)
    box_h = torch.sqrt(area / aspect).round().clamp(1, height)
    x0 = torch.floor(torch.rand(n, generator=generator, device=device) * (width - box_w + 1))
    y0 = torch.floor(torch.rand(n, generator=generator, device=device) * (height - box_h + 1))
    xs = torch.arange(width, device=device).view(1, 1, -1)
    ys = torch.arange(height, device=device).view(1, -1, 1)
    inside = ((xs >= x0.view(-1, 1, 1)) & (xs < (x0 + box_w).view(-1, 1, 1))
              & (ys >= y0.view(-1, 1, 1)) & (ys < (y0 + box_h).view(-1, 1, 1)))
    colour = torch.randint(0, 256, (n, 3, 1, 1), generator=generator, device=device).to(images.dtype)
    return torch.where(inside.unsqueeze(1), colour, images)


def _apply_to(images: torch.Tensor, members: torch.Tensor, step) -> torch.Tensor:
    if members.numel():
        images = images.clone()
        images[members] = step(images[members])
    return images


def augment_batch(crops: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, H, W, 3) uint8 crops on any device -> perturbed (N, H, W, 3) uint8 crops on that device,
    each face drawn independently, in the order of ``augment.augment_face``."""
    if crops.dtype != torch.uint8 or crops.dim() != 4 or crops.shape[-1] != 3:
        raise ValueError(f"augment_batch takes (N, H, W, 3) uint8 crops, got {tuple(crops.shape)} {crops.dtype}")
    n, device = crops.shape[0], crops.device
    if n == 0:
        return crops
    images = crops.permute(0, 3, 1, 2).float()
    flip = torch.rand(n, generator=generator, device=device) < config.flip
    if config.rotate_deg or config.scale or config.shift_px:
        images = _geometry(images, config, generator, flip)
    elif bool(flip.any()):
        images = torch.where(flip.view(n, 1, 1, 1), images.flip(-1), images)
    images = _colour(images, config, generator)
    images = _apply_to(images, _chosen(config.blur, n, generator, device), lambda x: _blur(x, generator))
    if config.downscale:
        images = _apply_to(images, _chosen(config.downscale, n, generator, device), lambda x: _downscale(x, generator))
    if config.noise:
        def add_noise(x: torch.Tensor) -> torch.Tensor:
            sigma = _uniform(x.shape[0], *NOISE_SIGMA, generator, device).view(-1, 1, 1, 1)
            noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
            return (x + noise * sigma).clamp(0.0, 255.0)
        images = _apply_to(images, _chosen(config.noise, n, generator, device), add_noise)
    if config.jpeg:
        images = _apply_to(images, _chosen(config.jpeg, n, generator, device), lambda x: _jpeg(x, generator))
    if config.erase:
        images = _apply_to(images, _chosen(config.erase, n, generator, device), lambda x: _erase(x, generator))
    return images.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def blend_faces(crops: torch.Tensor, eligible: torch.Tensor, probability: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Mixup for distillation: each ``eligible`` face of (N, H, W, 3) uint8 ``crops``, with
    ``probability``, becomes ``w * itself + (1 - w) * another eligible face`` (w uniform in 0..1).

    A blend is nobody's face, so only faces that carry no identity label should be eligible, and
    only an online teacher (``teacher.OnlineTeacher``), which scores the blend itself, can give its
    target. Partners are taken from the crops as given, never from an earlier blend.
    """
    rows = torch.nonzero(eligible).flatten()
    count, device = rows.numel(), crops.device
    if probability <= 0.0 or count < 2:
        return crops
    positions = _chosen(probability, count, generator, device)
    if positions.numel() == 0:
        return crops
    offsets = torch.randint(1, count, positions.shape, generator=generator, device=device)
    faces, partners = rows[positions], rows[(positions + offsets) % count]
    weight = torch.rand(positions.numel(), generator=generator, device=device).view(-1, 1, 1, 1)
    blended = crops.clone()
    blended[faces] = (weight * crops[faces].float() + (1.0 - weight) * crops[partners].float()).round().to(torch.uint8)
    return blended
