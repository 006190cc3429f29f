"""Training-time augmentation of image batches on the tensor side (flips, translations, crops)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Largest shift of ``--augment translate``, as a fraction of the side; smallest area of ``crop``.
TRANSLATE_FRACTION = 0.1


CROP_MIN_AREA = 0.35


def augment(x: torch.Tensor, kind: str, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crops or shifts (one affine resampling per batch, edges repeated) and horizontal flips."""
    n = len(x)
    if kind == "none":  # flips alone are exact mirror images, no resampling
        if flip:
            mirrored = torch.rand(n, generator=generator) < 0.5
            x[mirrored] = x[mirrored].flip(-1)
        return x
    scale = torch.ones(n)
    if kind == "crop":
        scale = torch.empty(n).uniform_(CROP_MIN_AREA, 1.0, generator=generator).sqrt()
    room = (1 - scale) if kind == "crop" else torch.full((n,), 2 * TRANSLATE_FRACTION if kind == "translate" else 0.0)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * room[:, None]
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale * mirror
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
