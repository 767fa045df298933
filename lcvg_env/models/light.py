"""The light estimator: how the illumination of a scene changes across the frame.

A composite step (``lcvg_env.compositing``) moves an object's own pixels; under a light that
varies across the scene those pixels should get brighter or darker as the object moves, and
the pixels alone cannot say by how much. :class:`LightEstimator` reads the background (the
simulator's canvas: the first frame, unknown where its objects stood) and returns the slopes
(b_x, b_y) of a log-linear illumination ``L(x, y) = exp(b_x * x + b_y * y)`` over coordinates
in [-1, 1] (x right, y down); an object moved from p to q is then scaled by ``L(q) / L(p)``
(:func:`lcvg_env.compositing.shading_gain`). It is trained apart from G
(``training.light``) and ships inside the generator's checkpoint when
``ModelConfig.shading`` is on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LightEstimator", "light_field", "plane_coordinates"]

_WIDTHS = (16, 32, 64, 64)
_GRID = 4  # the last feature map is pooled to this many cells a side (any frame size works)


def plane_coordinates(h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    """(1, 2, H, W) pixel-centre coordinates in [-1, 1]: channel 0 is x (right), 1 is y (down)."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * (2.0 / h) - 1.0
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * (2.0 / w) - 1.0
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y])[None]


def light_field(slopes: Tensor, h: int, w: int) -> Tensor:
    """Relative illumination (B, 1, H, W) ``exp(b_x x + b_y y)`` of slopes (B, 2)."""
    coords = plane_coordinates(h, w, slopes.device).to(slopes.dtype)
    return torch.exp((slopes[:, :, None, None] * coords).sum(dim=1, keepdim=True))


class LightEstimator(nn.Module):
    """(canvas (B, 3, H, W) in [-1, 1], known (B, 1, H, W) {0, 1}) -> slopes (B, 2).

    Unknown canvas pixels are filled from the known ones before the call (the caller's
    ``lcvg_env.compositing.fill_holes``); ``known`` tells the network where that happened.
    Four stride-2 convolutions (GroupNorm, SiLU) see the canvas with its coordinates, the last
    map is pooled to a 4x4 grid and two linear layers give the slopes. About 127 K parameters.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3 + 1 + 2  # canvas, known, coordinates
        for width in _WIDTHS:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1),
                       nn.GroupNorm(4, width), nn.SiLU()]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(channels * _GRID * _GRID, 64), nn.SiLU(),
                                  nn.Linear(64, 2))

    def forward(self, canvas: Tensor, known: Tensor) -> Tensor:
        """Slopes (B, 2) of the log-illumination plane of filled canvases (B, 3, H, W)."""
        b, _, h, w = canvas.shape
        coords = plane_coordinates(h, w, canvas.device).to(canvas.dtype).expand(b, -1, -1, -1)
        x = self.features(torch.cat([canvas, known.to(canvas.dtype), coords], dim=1))
        x = F.adaptive_avg_pool2d(x, _GRID).flatten(1)
        return self.head(x)
