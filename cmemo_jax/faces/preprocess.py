"""Face crops -> the teacher's input `[batch, size, size, 3]` RGB in 0-255, on the device.

One bilinear resampling does the centre crop, the resize and (in training) the random affine of
the FERPlus recipe (docs/method.md §2): each output pixel is mapped back through the affine into the
crop and read with `jax.scipy.ndimage.map_coordinates` (order 1; outside the image the nearest edge
pixel, as the authors' image warps pad). Grey inputs are copied to 3 channels; the teacher subtracts
its mean RGB itself (cmemo_jax.models.senet.MEAN_RGB).

Augmentation (training only): horizontal flip with p = 0.5; with p = 0.5 a random affine with zoom
+-4 %, rotation +-10 degrees and skew (shear) +-0.1.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

FLIP_PROB = 0.5
AFFINE_PROB = 0.5
MAX_ZOOM = 0.04
MAX_ROTATION_DEG = 10.0
MAX_SKEW = 0.1


def random_affine_params(rng, batch: int) -> jax.Array:
    """`[batch, 2, 2]` matrices (output -> input, in centred unit coordinates) of the recipe's
    augmentation: flip p=0.5, then zoom/rotation/skew applied to half of the images."""
    k_flip, k_aff, k_zoom, k_rot, k_skew = jax.random.split(rng, 5)
    flip = jnp.where(jax.random.uniform(k_flip, (batch,)) < FLIP_PROB, -1.0, 1.0)
    use = jax.random.uniform(k_aff, (batch,)) < AFFINE_PROB
    zoom = 1.0 + jnp.where(use, jax.random.uniform(k_zoom, (batch,), minval=-MAX_ZOOM, maxval=MAX_ZOOM), 0.0)
    angle = jnp.where(use, jax.random.uniform(k_rot, (batch,), minval=-1.0, maxval=1.0), 0.0)
    angle = jnp.deg2rad(MAX_ROTATION_DEG) * angle
    skew = jnp.where(use, jax.random.uniform(k_skew, (batch,), minval=-MAX_SKEW, maxval=MAX_SKEW), 0.0)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    rotation = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)
    shear = jnp.stack([jnp.stack([jnp.ones_like(skew), skew], -1),
                       jnp.stack([jnp.zeros_like(skew), jnp.ones_like(skew)], -1)], -2)
    flip_x = jnp.stack([jnp.stack([flip, jnp.zeros_like(flip)], -1),
                        jnp.stack([jnp.zeros_like(flip), jnp.ones_like(flip)], -1)], -2)
    return (rotation @ shear @ flip_x) / zoom[:, None, None]


def _sample(image, matrix, size: int, crop_fraction: float):
    """One image `[h, w, c]` -> `[size, size, c]` float32: output pixel centres mapped through
    `matrix` (centred unit coords: -1..1 spans the crop) into the centre crop of the input."""
    h, w = image.shape[:2]
    grid = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size * 2.0 - 1.0
    gy, gx = jnp.meshgrid(grid, grid, indexing="ij")
    src = jnp.einsum("ij,jyx->iyx", matrix, jnp.stack([gx, gy]))   # [2 (x, y), size, size]
    x = (src[0] * crop_fraction + 1.0) / 2.0 * w - 0.5
    y = (src[1] * crop_fraction + 1.0) / 2.0 * h - 0.5
    sample = lambda ch: jax.scipy.ndimage.map_coordinates(ch, [y, x], order=1, mode="nearest")
    return jnp.stack([sample(image[..., c]) for c in range(image.shape[-1])], axis=-1)


def teacher_inputs(images, size: int, *, crop_fraction: float = 1.0, affine=None) -> jax.Array:
    """uint8 faces `[batch, h, w]` (grey) or `[batch, h, w, 1 | 3]` -> float32 `[batch, size, size, 3]`
    RGB in 0-255.

    crop_fraction: side of the centred crop as a fraction of the input side (1 / 1.6 for the
      VoxCeleb "1.6" face-frame release, whose crops are 1.6x wider than the face; 1.0 for tight
      crops such as FERPlus and the synthetic corpus).
    affine: optional `[batch, 2, 2]` output->input matrices (`random_affine_params`); None = identity.
    """
    x = jnp.asarray(images, jnp.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"faces must be [batch, h, w] or [batch, h, w, 1|3], got shape {images.shape}")
    if affine is None:
        affine = jnp.broadcast_to(jnp.eye(2, dtype=jnp.float32), (x.shape[0], 2, 2))
    out = jax.vmap(lambda im, m: _sample(im, m, size, crop_fraction))(x, affine)
    if out.shape[-1] == 1:
        out = jnp.repeat(out, 3, axis=-1)
    return out
