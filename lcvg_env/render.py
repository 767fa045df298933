"""Rendering of lcvg frames: mask overlay, centroid and target markers, upscaling, a window.

All drawing is numpy on uint8 (H, W, 3) frames; positions are normalised (x, y) as in
``lcvg_env.control`` (``align_corners=False``), converted to pixels of the (upscaled) frame.
``HumanWindow`` shows frames with pygame (the ``[play]`` extra), imported only when a window
is opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

OBJECT_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 80, 80),
    (80, 170, 255),
    (90, 230, 90),
    (255, 200, 40),
    (200, 90, 255),
    (40, 230, 230),
)
"""Colour of object k's overlay and markers is ``OBJECT_COLORS[k % 6]``."""
FOREGROUND_COLOR = (255, 255, 255)
"""Overlay colour of foreground that is not a controlled object."""


def upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling: (H, W, C) -> (H * scale, W * scale, C)."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an int >= 1, got {scale!r}")
    if scale == 1:
        return frame.copy()
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


def to_pixels(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Normalised (x, y) points (..., 2) -> pixel (x, y) of a frame of ``size`` (H, W)."""
    h, w = size
    points = np.asarray(points, dtype=np.float64)
    return ((points + 1.0) * np.array([w, h]) - 1.0) / 2.0


def overlay(
    frame: np.ndarray, mask: np.ndarray, color: Sequence[int], alpha: float = 0.45
) -> np.ndarray:
    """Blend ``color`` into ``frame`` (H, W, 3) uint8 where ``mask`` (h, w) is set.

    ``mask`` may be smaller than the frame by an integer factor (it is upscaled). Returns a new
    array.
    """
    mask = np.asarray(mask) > 0.5
    if mask.shape != frame.shape[:2]:
        factor = frame.shape[0] // mask.shape[0]
        mask = upscale(mask[..., None], factor)[..., 0]
    out = frame.astype(np.float32)
    tint = np.asarray(color, dtype=np.float32)
    out[mask] = (1.0 - alpha) * out[mask] + alpha * tint
    return out.round().clip(0, 255).astype(np.uint8)


def outline(frame: np.ndarray, mask: np.ndarray, color: Sequence[int]) -> np.ndarray:
    """Draw the boundary pixels of ``mask`` (h, w) onto ``frame`` (H, W, 3) in place."""
    mask = np.asarray(mask) > 0.5
    if mask.shape != frame.shape[:2]:
        factor = frame.shape[0] // mask.shape[0]
        mask = upscale(mask[..., None], factor)[..., 0]
    padded = np.pad(mask, 1)
    interior = (
        padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
    )
    frame[mask & ~interior] = np.asarray(color, dtype=np.uint8)
    return frame


def draw_cross(
    frame: np.ndarray, xy: Sequence[float], color: Sequence[int], size: int = 4, width: int = 1
) -> np.ndarray:
    """Draw an x-shaped cross centred at pixel ``xy`` onto ``frame`` in place (clipped)."""
    h, w = frame.shape[:2]
    cx, cy = int(round(float(xy[0]))), int(round(float(xy[1])))
    rgb = np.asarray(color, dtype=np.uint8)
    for d in range(-size, size + 1):
        for t in range(-(width // 2), width - width // 2):
            for x, y in ((cx + d + t, cy + d), (cx + d + t, cy - d)):
                if 0 <= x < w and 0 <= y < h:
                    frame[y, x] = rgb
    return frame


def draw_ring(
    frame: np.ndarray, xy: Sequence[float], radius: float, color: Sequence[int], width: float = 1.0
) -> np.ndarray:
    """Draw a circle of ``radius`` pixels centred at pixel ``xy`` onto ``frame`` in place."""
    h, w = frame.shape[:2]
    ys, xs = np.ogrid[:h, :w]
    dist = np.sqrt((xs - float(xy[0])) ** 2 + (ys - float(xy[1])) ** 2)
    frame[np.abs(dist - radius) <= width / 2 + 0.25] = np.asarray(color, dtype=np.uint8)
    return frame


def draw_dot(
    frame: np.ndarray, xy: Sequence[float], radius: float, color: Sequence[int]
) -> np.ndarray:
    """Draw a filled disc of ``radius`` pixels at pixel ``xy`` onto ``frame`` in place."""
    h, w = frame.shape[:2]
    ys, xs = np.ogrid[:h, :w]
    disc = (xs - float(xy[0])) ** 2 + (ys - float(xy[1])) ** 2 <= radius**2
    frame[disc] = np.asarray(color, dtype=np.uint8)
    return frame


def compose(
    frame: np.ndarray,
    *,
    objects: np.ndarray | None = None,
    foreground: np.ndarray | None = None,
    centroids: np.ndarray | None = None,
    present: np.ndarray | None = None,
    targets: np.ndarray | None = None,
    target_radius: float | None = None,
    scale: int = 1,
    alpha: float = 0.45,
) -> np.ndarray:
    """Render one frame with its masks and markers.

    Args:
        frame: uint8 (H, W, 3).
        objects: (K, H, W) per-object masks in {0, 1}; object k is tinted ``OBJECT_COLORS[k]``.
        foreground: (H, W) whole foreground mask; parts not in ``objects`` are tinted white.
        centroids: (K, 2) normalised object centroids, drawn as dots.
        present: (K,) bool; centroids of absent objects are not drawn.
        targets: (K, 2) normalised targets, drawn as crosses.
        target_radius: radius of a ring around each target, in normalised units of width.
        scale: integer upscaling factor applied before the markers are drawn.
        alpha: overlay opacity.

    Returns:
        uint8 (H * scale, W * scale, 3), a new array.
    """
    out = upscale(np.asarray(frame, dtype=np.uint8), scale)
    size = out.shape[:2]
    if foreground is not None:
        rest = np.asarray(foreground) > 0.5
        if objects is not None and len(objects):
            rest = rest & ~(np.asarray(objects) > 0.5).any(axis=0)
        out = overlay(out, rest, FOREGROUND_COLOR, alpha * 0.6)
    if objects is not None:
        for k, mask in enumerate(np.asarray(objects)):
            if mask.any():
                out = overlay(out, mask, OBJECT_COLORS[k % len(OBJECT_COLORS)], alpha)
    marker = max(2, scale * 2)
    if targets is not None:
        for k, xy in enumerate(to_pixels(targets, size)):
            color = OBJECT_COLORS[k % len(OBJECT_COLORS)]
            draw_cross(out, xy, color, size=marker, width=max(1, scale // 2))
            if target_radius is not None:
                draw_ring(out, xy, target_radius * size[1] / 2, color)
    if centroids is not None:
        shown = np.ones(len(centroids), bool) if present is None else np.asarray(present, bool)
        for k, xy in enumerate(to_pixels(centroids, size)):
            if shown[k]:
                draw_dot(out, xy, max(1.0, scale * 0.75), (255, 255, 255))
                draw_dot(out, xy, max(0.5, scale * 0.4), OBJECT_COLORS[k % len(OBJECT_COLORS)])
    return out


def tile(frames: Sequence[np.ndarray], columns: int | None = None) -> np.ndarray:
    """Tile equally sized uint8 (H, W, 3) frames into a grid (row-major, black padding)."""
    if not frames:
        raise ValueError("tile needs at least one frame, got none")
    n = len(frames)
    cols = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w, c = frames[0].shape
    grid = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i, frame in enumerate(frames):
        r, q = divmod(i, cols)
        grid[r * h : (r + 1) * h, q * w : (q + 1) * w] = frame
    return grid


class HumanWindow:
    """A pygame window that shows uint8 (H, W, 3) frames at ``fps`` (``render_mode="human"``).

    Raises ``gymnasium.error.DependencyNotInstalled`` naming the ``[play]`` extra when pygame is
    missing.
    """

    def __init__(self, title: str = "lcvg", fps: float = 10.0) -> None:
        self.title = title
        self.fps = float(fps)
        self._pygame: Any = None
        self._screen: Any = None
        self._clock: Any = None

    def show(self, frame: np.ndarray) -> None:
        """Display ``frame`` and wait for the next tick of ``fps``; handles window events."""
        pygame = self._import()
        h, w = frame.shape[:2]
        if self._screen is None or self._screen.get_size() != (w, h):
            pygame.display.init()
            pygame.display.set_caption(self.title)
            self._screen = pygame.display.set_mode((w, h))
            self._clock = pygame.time.Clock()
        surface = pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
        self._screen.blit(surface, (0, 0))
        pygame.event.pump()
        pygame.display.flip()
        self._clock.tick(self.fps)

    def close(self) -> None:
        """Close the window (if one was opened)."""
        if self._pygame is not None and self._screen is not None:
            self._pygame.display.quit()
        self._screen = None

    def _import(self) -> Any:
        if self._pygame is None:
            self._pygame = import_pygame()
        return self._pygame


def import_pygame() -> Any:
    """Import pygame, or raise ``DependencyNotInstalled`` saying how to install it."""
    try:
        import pygame
    except ImportError as error:
        from gymnasium.error import DependencyNotInstalled

        raise DependencyNotInstalled(
            'pygame is needed for render_mode="human" and lcvg_env.play: '
            "pip install 'lcvg[play]'"
        ) from error
    return pygame


def save_video(path: Any, frames: Sequence[np.ndarray], fps: float = 10.0) -> Any:
    """Write uint8 (H, W, 3) frames as a looping GIF, or an MP4 (PyAV) for ``*.mp4``.

    Parent folders are created. Returns the path.

    Raises:
        ValueError: no frames, or frames of different shapes.
    """
    from pathlib import Path

    import imageio.v3 as iio

    if not frames:
        raise ValueError("save_video needs at least one frame, got none")
    stack = np.stack([np.asarray(frame, dtype=np.uint8) for frame in frames])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".mp4":
        even = stack[:, : stack.shape[1] // 2 * 2, : stack.shape[2] // 2 * 2]  # yuv420 needs even
        iio.imwrite(path, even, plugin="pyav", fps=fps, codec="libx264")
    else:
        iio.imwrite(path, stack, duration=int(round(1000.0 / fps)), loop=0)
    return path
