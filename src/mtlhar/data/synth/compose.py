"""Turning the layer canvas into RGB frames: colour lookup, background, lighting and sensor noise.

Pixels are handled as packed RGBA uint32 words: one table gather per visible layer pixel, and noise
is a single integer add per pixel because colours keep enough headroom that no byte can carry.
"""

from __future__ import annotations

import numpy as np

from .background import vignette
from .raster import SHADES, Canvas


def noise_bits(sigma: float) -> tuple[int, bool]:
    """Noise as uniform random bits per channel (optionally the sum of two draws): the (bits, twice)
    whose standard deviation is closest to sigma; (0, False) for no noise."""
    if sigma <= 0:
        return 0, False
    options = [(b, t) for b in range(1, 7) for t in (False, True)]
    std = [(2**b) / np.sqrt(12) * (np.sqrt(2) if t else 1.0) for b, t in options]
    return options[int(np.argmin(np.abs(np.log(np.array(std) / sigma))))]


def _headroom(bits: int, twice: bool) -> tuple[int, int]:
    """(lo, hi): colours live in [lo, 255 - hi] so that adding noise of range lo + hi cannot overflow."""
    span = ((1 << bits) - 1) * (2 if twice else 1) if bits else 0
    return span // 2, span - span // 2


def compose(
    rng: np.random.Generator,
    canvas: Canvas,
    colours: np.ndarray,
    backdrop: np.ndarray,
    sigma: float,
    dark: bool,
) -> np.ndarray:
    """RGBA frames uint8 [T,H,W,4] (alpha 0) from the canvas, layer colours [L,3] and the backdrop
    [T or 1, H, W, 3]; `dark` applies the low-light dimming and vignetting."""
    lab = canvas.label
    T, H, W = lab.shape
    gain = rng.uniform(0.9, 1.1)
    bits, twice = noise_bits(sigma)
    lo, hi = (0, 0) if dark else _headroom(bits, twice)  # dark: headroom is applied after dimming
    levels = np.arange(SHADES, dtype=np.float64) / (SHADES - 1)
    table = np.zeros((len(colours), SHADES, 4), np.uint8)
    table[..., :3] = np.clip(colours[:, None, :] * levels[None, :, None] * gain + 0.5, lo, 255 - hi) - lo
    bg8 = np.zeros(backdrop.shape[:3] + (4,), np.uint8)
    bg8[..., :3] = np.clip(backdrop * gain + 0.5, lo, 255 - hi) - lo
    packed = np.empty((T, H, W), np.uint32)
    packed[:] = bg8.view(np.uint32)[..., 0]
    nz = np.flatnonzero(lab)  # gather layer colours only where a layer is visible
    index = (lab.reshape(-1)[nz].astype(np.intp) * SHADES) + canvas.shade.reshape(-1)[nz]
    packed.reshape(-1)[nz] = table.view(np.uint32).reshape(-1).take(index)
    if dark:
        dim = rng.uniform(0.3, 0.45) * vignette(H, W, rng.uniform(0.3, 0.6))
        rgba = packed.view(np.uint8).reshape(T, H, W, 4) * dim + rng.uniform(5, 15) + 0.5
        lo, hi = _headroom(bits, twice)
        rgba = np.clip(rgba, lo, 255 - hi) - lo
        rgba[..., 3] = 0
        packed = rgba.astype(np.uint8).view(np.uint32)[..., 0]
    if bits:
        mask = np.uint32(((1 << bits) - 1) * 0x010101)  # R, G, B bytes; alpha stays 0
        for _ in range(2 if twice else 1):
            raw = rng.bit_generator.random_raw((packed.size + 1) // 2).view(np.uint32)[: packed.size]
            packed = packed + (raw.reshape(packed.shape) & mask)
    return np.ascontiguousarray(packed).view(np.uint8).reshape(T, H, W, 4)
