"""Procedural sprites scenes: sample a scene once, render it with any object poses.

A *scene* (:class:`Scene`) is everything fixed about one sprites world: the object-free lit
background, each object's colour, shape, texture and depth, and (style "varied") the
illumination field and the drop-shadow parameters. *Poses* (:class:`Poses`) are what moves:
each object's centre and a 2x2 linear map. :func:`render` draws a scene with any poses and
returns the frame with exact visible and unoccluded masks, so the same code makes the training
clips (``training.data.sprites``) and the ground-truth twin environment
(``lcvg_env.world.twin``).

Coordinates
-----------
Pixel (x, y): x right (the column), y down (the row); the centre of pixel (row i, column j) is
at (x, y) = (j, i). An object's shape lives in shape coordinates (u, v) whose unit is the
object's radius; the pixel position of shape point (u, v) is ``center + linear @ (u, v)``. So
``linear = radius * R(angle)`` for a plain rotated object (:meth:`Poses.from_angles`, positive
angle = clockwise on screen since y points down), and any rotation, scale, anisotropic scale or
shear is a ``linear``. Every shape's origin is its AREA CENTROID, so transforming ``linear``
about ``center`` keeps the object's area centroid at ``center``.

Styles
------
- ``"classic"``: the original sprites look: 6 saturated key colours (``KEY_COLORS``), 6 shapes
  (``CLASSIC_SHAPES``), 4 textures, a smooth low-saturation background; no shading, no
  shadows.
- ``"varied"``: a different distribution, to train on one style and judge on the other:
  continuous hues and saturations (HSV, objects >= ``min_color_distance`` RGB apart and far
  from the background), six background families (``BACKGROUND_FAMILIES``), twelve shapes
  (``VARIED_SHAPES``), seven textures, and appearance that depends on where an object is: a
  smooth illumination gradient multiplying objects and background, and a soft drop shadow of
  every object on the background (shadows fall on the background only, never on objects).

Coverage is antialiased (``clip(0.5 - signed distance in pixels, 0, 1)``, the distance scaled
by ``sqrt(|det linear|)``, exact for rotations and uniform scales, an approximation of the
antialiasing width under anisotropic scale or shear); masks are ``coverage > 0.5``.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cache
from statistics import NormalDist
from typing import Any, Literal, NamedTuple, get_args

import numpy as np
from PIL import Image

from lcvg_env.configs import check_choices

__all__ = [
    "BACKGROUND_FAMILIES",
    "CLASSIC_SHAPES",
    "CLASSIC_TEXTURES",
    "KEY_COLORS",
    "MAX_OBJECTS",
    "STYLES",
    "VARIED_SHAPES",
    "VARIED_TEXTURES",
    "Poses",
    "Rendered",
    "Scene",
    "SceneConfig",
    "check_looks_only",
    "render",
    "render_background",
    "sample_scene",
    "shape_sdf",
    "with_looks",
]

Style = Literal["classic", "varied"]
"""Scene styles (see the module docstring)."""
STYLES: tuple[Style, ...] = get_args(Style)
"""The choices of ``Style``."""

CLASSIC_SHAPES = ("disc", "square", "triangle", "ellipse", "star", "cross")
"""Shapes of the classic style."""
VARIED_SHAPES = CLASSIC_SHAPES + ("pentagon", "hexagon", "ring", "capsule", "heart", "crescent")
"""Shapes of the varied style (the classic ones and six more)."""
CLASSIC_TEXTURES = ("stripes", "checks", "rings", "waves")
"""Object textures of the classic style."""
VARIED_TEXTURES = CLASSIC_TEXTURES + ("none", "dots", "spots")
"""Object textures of the varied style."""
BACKGROUND_FAMILIES = ("smooth", "gradient", "stripes", "tiles", "granite", "vignette")
"""Background families of the varied style (the classic style always uses "smooth")."""

KEY_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (35, 195, 55),
    "blue": (45, 85, 235),
    "yellow": (240, 215, 35),
    "magenta": (215, 50, 215),
    "cyan": (35, 205, 215),
}
"""Saturated key colours of the classic style (pairwise RGB distance >= 120)."""

MAX_OBJECTS = {"classic": len(KEY_COLORS), "varied": 8}
"""Most objects a scene of each style can hold (classic: one per key colour)."""

_SHAPES_OF = {"classic": CLASSIC_SHAPES, "varied": VARIED_SHAPES}
_TEXTURES_OF = {"classic": CLASSIC_TEXTURES, "varied": VARIED_TEXTURES}
_EVAL_PAD = 4  # objects are evaluated up to this many pixels outside the frame (for shadows)
_SHADOW_PAD = 8  # padding of the shadow map: _EVAL_PAD + the largest shadow offset (3) + 1
_SPOTS = 5  # spots per object of the "spots" texture

_NORMAL_TABLE = np.array(
    [NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], dtype=np.float32
)
_NORMAL_TABLE /= _NORMAL_TABLE.std()  # unit variance: 256 equiprobable normal quantiles


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn (:func:`sample_scene`); validated on construction."""

    size: int = 64
    """Frame height and width in pixels (>= 8)."""
    objects: tuple[int, int] = (1, 3)
    """Inclusive range (lo, hi) of the number of objects per scene (hi <= MAX_OBJECTS[style])."""
    shapes: tuple[str, ...] | None = None
    """Shapes to draw from; None (default) = every shape of the style. Resolved to a tuple."""
    radius: tuple[float, float] = (0.08, 0.14)
    """Object radius range, as a fraction of the frame size."""
    style: Style = "classic"
    """One of ``STYLES``."""
    texture: float = 0.1
    """Relative amplitude of the texture on objects."""
    background_contrast: float = 28.0
    """Amplitude (grey levels) of the background's texture."""
    noise_std: float = 2.0
    """Standard deviation of the sensor noise (grey levels), drawn when ``render`` gets an rng."""
    margin: float = 0.5
    """Object centres are drawn at least ``margin * radius`` inside the frame."""
    light_amplitude: tuple[float, float] = (0.12, 0.2)
    """Varied style: range of the illumination gradient's amplitude (brightness factor
    ``1 +- amplitude`` across the frame, in a random direction)."""
    shadow_strength: tuple[float, float] = (0.25, 0.4)
    """Varied style: range of how much a drop shadow darkens the background (0.3 = -30 %)."""
    shadow_offset: tuple[float, float] = (1.5, 3.2)
    """Varied style: range of the shadow offset length in pixels (rounded to whole pixels per
    axis, at most 3, never (0, 0)); one offset for the whole scene."""
    shadow_blur: tuple[float, float] = (1.0, 2.0)
    """Varied style: range of the shadow's softness (pixels, about a Gaussian blur's sigma)."""
    min_color_distance: float = 60.0
    """Varied style: least RGB distance between two objects' colours in one scene."""
    background_distance: float = 70.0
    """Varied style: least RGB distance between an object's colour and the background's mean
    (and the mean of its shadowed background)."""
    outline: float = 0.0
    """Width (pixels) of a border in ``outline_color`` drawn just inside every object's edge
    (0: none): outlined sprites, a look neither style has."""
    outline_color: tuple[float, float, float] = (20.0, 20.0, 24.0)
    """RGB (grey levels) of the border of ``outline`` (lit like the objects)."""
    outline_share: float = 1.0
    """Chance that an object gets the border of ``outline`` (drawn for each object; 1: every
    object, 0.5: about half of them, a scene of bordered and plain sprites)."""

    def __post_init__(self) -> None:
        """Validate every field; resolve ``shapes=None`` to the style's shapes."""
        check_choices(self)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 8:
            raise ValueError(f"size must be an int >= 8, got {self.size!r}")
        most = MAX_OBJECTS[self.style]
        try:
            lo, hi = (int(x) for x in self.objects)
        except (TypeError, ValueError):
            raise ValueError(f"objects must be a range (lo, hi), got {self.objects!r}") from None
        if not (1 <= lo <= hi <= most):
            raise ValueError(
                f"objects must be a range (lo, hi) with 1 <= lo <= hi <= {most} for style "
                f"{self.style!r}, got {self.objects!r}"
            )
        object.__setattr__(self, "objects", (lo, hi))
        known = _SHAPES_OF[self.style]
        shapes = known if self.shapes is None else tuple(self.shapes)
        bad = [s for s in shapes if s not in known]
        if bad or not shapes or isinstance(self.shapes, str):
            raise ValueError(
                f"shapes must be a non-empty subset of {known} (style {self.style!r}), got "
                f"{self.shapes!r}"
            )
        object.__setattr__(self, "shapes", shapes)
        for name in ("radius", "light_amplitude", "shadow_strength", "shadow_offset",
                     "shadow_blur"):
            a, b = getattr(self, name)
            if not 0 <= a <= b:
                raise ValueError(f"{name} must be a range 0 <= lo <= hi, got {(a, b)!r}")
        if self.radius[1] <= 0 or self.radius[1] > 0.5:
            raise ValueError(f"radius must be within (0, 0.5] of the size, got {self.radius!r}")
        if self.light_amplitude[1] >= 1 or self.shadow_strength[1] >= 1:
            raise ValueError(
                "light_amplitude and shadow_strength must stay below 1, got "
                f"{self.light_amplitude!r}, {self.shadow_strength!r}"
            )
        if len(self.outline_color) != 3 or not all(
                isinstance(c, int | float) and 0 <= c <= 255 for c in self.outline_color):
            raise ValueError(
                f"outline_color must be three grey levels in [0, 255], got {self.outline_color!r}")
        if not (isinstance(self.outline_share, int | float) and 0 <= self.outline_share <= 1):
            raise ValueError(f"outline_share must be a number in [0, 1], got "
                             f"{self.outline_share!r}")
        for name in ("noise_std", "texture", "background_contrast", "margin",
                     "min_color_distance", "background_distance", "outline"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_looks_only(scene: Any, owned: tuple[str, ...], who: str, instead: str) -> None:
    """Check that ``scene`` is a :class:`SceneConfig` that leaves the ``owned`` fields alone.

    For a tool that takes a scene's looks (``--scene.*``) but sets ``owned`` fields (the
    style, size, ...) itself: a ValueError names ``who`` sets them and what to give
    ``instead``.
    """
    if not isinstance(scene, SceneConfig):
        raise ValueError(f"scene must be a SceneConfig, got {scene!r}")
    default = SceneConfig()
    set_here = [f"scene.{name}={getattr(scene, name)!r}" for name in owned
                if getattr(scene, name) != getattr(default, name)]
    if set_here:
        raise ValueError(f"{', '.join(set_here)}: {who} sets scene fields {owned} itself "
                         f"({instead})")


def with_looks(looks: SceneConfig, **own: Any) -> SceneConfig:
    """Return a :class:`SceneConfig` of ``own``'s fields and ``looks``' others.

    The shapes are left to follow the style (``own`` sets it, or the default).
    """
    kept = {f.name: getattr(looks, f.name) for f in fields(SceneConfig)
            if f.name not in own and f.name != "shapes"}
    return SceneConfig(**kept, **own)


@dataclass(eq=False)
class Scene:
    """Everything fixed about one scene (K objects); made by :func:`sample_scene`.

    Arrays are indexed by object k = 0..K-1 (the same order as :class:`Poses`).
    """

    style: str
    """The style it was drawn in."""
    size: int
    """Frame height and width S."""
    background: np.ndarray
    """float32 (S, S, 3) object-free background in grey levels, lit (illumination applied),
    without shadows, noise or gain."""
    colors: np.ndarray
    """float32 (K, 3) base RGB colour of each object (before texture and light)."""
    shapes: tuple[str, ...]
    """Shape name of each object."""
    textures: tuple[str, ...]
    """Texture kind of each object (``CLASSIC_TEXTURES`` / ``VARIED_TEXTURES``)."""
    texture_freq: np.ndarray
    """float64 (K,) texture frequency (cycles per radius, times 2)."""
    texture_phase: np.ndarray
    """float64 (K,) texture phase (radians)."""
    texture_spots: np.ndarray
    """float32 (K, 5, 3) spots (u, v, radius) of the "spots" texture (zeros otherwise)."""
    texture_amplitude: float
    """Relative texture amplitude (``SceneConfig.texture``)."""
    depth: np.ndarray
    """int64 (K,) depth order, 0 = front (a permutation of 0..K-1)."""
    names: tuple[str, ...]
    """A name per object: "red star" (classic), "hue 212 star" (varied)."""
    radii: np.ndarray
    """float64 (K,) the radius (pixels) each object was drawn with (its initial pose)."""
    noise_std: float
    """Sensor noise standard deviation (grey levels)."""
    background_family: str = "smooth"
    """Which family of ``BACKGROUND_FAMILIES`` the background is."""
    light: np.ndarray | None = None
    """float32 (S, S) illumination factor multiplying objects and background, or None (1)."""
    light_direction: np.ndarray = field(default_factory=lambda: np.zeros(2))
    """float64 (2,) unit direction in which the illumination increases (zeros: no gradient)."""
    light_amplitude: float = 0.0
    """The illumination factor spans ``1 - amplitude`` .. ``1 + amplitude`` across the frame."""
    shadow_offset: tuple[int, int] = (0, 0)
    """Whole-pixel (dx, dy) offset of every object's drop shadow."""
    shadow_strength: float = 0.0
    """Fraction by which a full shadow darkens the background (0: no shadows)."""
    shadow_blur: float = 0.0
    """Softness of the shadows' edges (pixels)."""
    outline: float = 0.0
    """Width (pixels) of the objects' border in ``outline_color`` (0: none)."""
    outline_color: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    """float32 (3,) RGB of the border (grey levels, before light)."""
    bordered: tuple[bool, ...] | None = None
    """Which objects have the border of ``outline`` (None: every one)."""
    _static: Any = field(default=None, repr=False, compare=False)
    """Render cache (depth orders, noise table); rebuilt when depth or noise_std change."""

    @property
    def num_objects(self) -> int:
        """K."""
        return len(self.shapes)


@dataclass(eq=False)
class Poses:
    """Geometric state of the K objects of a scene.

    ``centers`` float64 (K, 2): pixel (x, y) of each object's area centroid (pixel centres at
    integer coordinates). ``linear`` float64 (K, 2, 2): maps shape coordinates (u, v), unit =
    radius, to pixel offsets from the centre (rotation, scale, anisotropic scale and shear;
    the radius is part of the matrix). Inputs are converted to fresh float64 arrays.
    """

    centers: np.ndarray
    """float64 (K, 2) pixel (x, y)."""
    linear: np.ndarray
    """float64 (K, 2, 2) shape (u, v) -> pixel offset."""

    def __post_init__(self) -> None:
        """Check the shapes and values; store float64 copies."""
        centers = np.array(self.centers, dtype=np.float64)
        linear = np.array(self.linear, dtype=np.float64)
        if centers.ndim != 2 or centers.shape[1] != 2:
            raise ValueError(f"Poses.centers must be (K, 2), got shape {centers.shape}")
        if linear.shape != (centers.shape[0], 2, 2):
            raise ValueError(
                f"Poses.linear must be (K, 2, 2) with K = {centers.shape[0]}, got shape "
                f"{linear.shape}"
            )
        if not (np.all(np.isfinite(centers)) and np.all(np.isfinite(linear))):
            raise ValueError("Poses.centers and Poses.linear must be finite")
        det = linear[:, 0, 0] * linear[:, 1, 1] - linear[:, 0, 1] * linear[:, 1, 0]
        if np.any(np.abs(det) < 1e-9):
            raise ValueError(f"Poses.linear must be invertible, got determinants {det.tolist()}")
        self.centers = centers
        self.linear = linear

    @classmethod
    def from_angles(cls, centers: Any, angles: Any, radii: Any) -> Poses:
        """Poses of rotated, uniformly scaled objects.

        Args:
            centers: (K, 2) pixel (x, y).
            angles: (K,) radians (positive = clockwise on screen).
            radii: (K,) pixels.

        Returns:
            Poses with ``linear[k] = radii[k] * [[cos, -sin], [sin, cos]]``.
        """
        angles = np.asarray(angles, dtype=np.float64).reshape(-1)
        radii = np.asarray(radii, dtype=np.float64).reshape(-1)
        if angles.shape != radii.shape:
            raise ValueError(
                f"angles and radii must both be (K,), got {angles.shape} and {radii.shape}"
            )
        cos, sin = np.cos(angles) * radii, np.sin(angles) * radii
        linear = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
        return cls(centers, linear)

    def copy(self) -> Poses:
        """Deep copy."""
        return Poses(self.centers.copy(), self.linear.copy())

    @property
    def num_objects(self) -> int:
        """K."""
        return int(self.centers.shape[0])

    def scales(self) -> np.ndarray:
        """float64 (K,) ``sqrt(|det linear|)``: each object's radius in pixels (area scale)."""
        lin = self.linear
        return np.sqrt(np.abs(lin[:, 0, 0] * lin[:, 1, 1] - lin[:, 0, 1] * lin[:, 1, 0]))


class Rendered(NamedTuple):
    """What :func:`render` returns (K objects, frame size S)."""

    frame: np.ndarray
    """uint8 (S, S, 3) RGB."""
    visible: np.ndarray
    """bool (K, S, S): pixels where object k is seen (front objects hide the ones behind)."""
    full: np.ndarray
    """bool (K, S, S): pixels object k covers, occluded or not (coverage > 0.5)."""


# --- shapes ---------------------------------------------------------------------------------
def _box(u: np.ndarray, v: np.ndarray, bx: float, by: float) -> np.ndarray:
    qx = np.abs(u) - bx
    qy = np.abs(v) - by
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _disc(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.sqrt(u * u + v * v) - 1.0


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return _box(u, v, 0.85, 0.85)


def _ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    a, b = 1.2, 0.7
    return (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1.0) * b


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.minimum(_box(u, v, 1.05, 0.36), _box(u, v, 0.36, 1.05))


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r = 1.05  # half the side length; apex up
    k3 = math.sqrt(3.0)
    px = np.abs(u) - r
    py = -v + r / k3
    swap = px + k3 * py > 0
    qx = np.where(swap, (px - k3 * py) / 2, px)
    qy = np.where(swap, (-k3 * px - py) / 2, py)
    qx = qx - np.clip(qx, -2 * r, 0)
    return -np.sqrt(qx * qx + qy * qy) * np.sign(qy)


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r = np.sqrt(u * u + v * v)
    phase = (np.arctan2(v, u) * (5 / (2 * np.pi)) + 0.25) % 1.0
    tri = np.abs(phase - 0.5) * 2  # 1 at the tips, 0 between them
    edge = 0.55 + (1.25 - 0.55) * tri
    return (r - edge) * 0.6


def _polygon(n: int, circumradius: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    sector = 2 * math.pi / n
    apothem = circumradius * math.cos(sector / 2)

    def sdf(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        r = np.sqrt(u * u + v * v)
        a = (np.arctan2(v, u) + math.pi / 2) % sector - sector / 2  # a vertex points up
        return r * np.cos(a) - apothem

    return sdf


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.abs(np.sqrt(u * u + v * v) - 0.72) - 0.3


def _capsule(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    dx = np.abs(u) - np.minimum(np.abs(u), 0.6)
    return np.sqrt(dx * dx + v * v) - 0.5


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    lobes = np.minimum(
        np.sqrt((u + 0.42) ** 2 + (v + 0.3) ** 2), np.sqrt((u - 0.42) ** 2 + (v + 0.3) ** 2)
    ) - 0.5
    c = math.sqrt(0.5)  # a square turned by 45 degrees, its lower corner the heart's tip
    ru, rv = c * (u + v - 0.2), c * (v - u - 0.2)
    return np.minimum(lobes, _box(ru, rv, 0.58, 0.58))


def _crescent(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    outer = np.sqrt(u * u + v * v) - 1.0
    inner = np.sqrt((u - 0.5) ** 2 + (v + 0.1) ** 2) - 0.78
    return np.maximum(outer, -inner)


_RAW_SDF: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "disc": _disc,
    "square": _square,
    "triangle": _triangle,
    "ellipse": _ellipse,
    "star": _star,
    "cross": _cross,
    "pentagon": _polygon(5, 1.05),
    "hexagon": _polygon(6, 1.0),
    "ring": _ring,
    "capsule": _capsule,
    "heart": _heart,
    "crescent": _crescent,
}
_SYMMETRIC = {"disc", "square", "ellipse", "star", "cross", "hexagon", "ring", "capsule"}
"""Point- or mirror-symmetric shapes with their centroid at the raw origin on both axes.
The pentagon is symmetric only about the vertical axis; it is centred numerically."""


@cache
def _geometry(shape: str) -> tuple[float, float, float]:
    """(cx, cy, extent): raw area centroid and the largest |(u, v)| from it, in radius units."""
    if shape not in _RAW_SDF:
        raise ValueError(f"unknown shape {shape!r}; known: {VARIED_SHAPES}")
    g = np.linspace(-2.0, 2.0, 801)
    u, v = np.meshgrid(g, g)
    sd = _RAW_SDF[shape](u, v)
    inside = sd < 0
    cover = np.clip(0.5 - sd / (g[1] - g[0]), 0.0, 1.0)  # antialiased: a sub-grid centroid
    cx, cy = (0.0, 0.0)
    if shape not in _SYMMETRIC:
        cx, cy = float((u * cover).sum() / cover.sum()), float((v * cover).sum() / cover.sum())
    extent = float(np.sqrt((u[inside] - cx) ** 2 + (v[inside] - cy) ** 2).max()) + 0.01
    return cx, cy, extent


def shape_sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside, radius units) of ``shape`` at shape coords (u, v).

    The origin of (u, v) is the shape's area centroid. Arrays of any (equal) shape.
    """
    cx, cy, _ = _geometry(shape)
    if cx == 0.0 and cy == 0.0:
        return _RAW_SDF[shape](u, v)
    return _RAW_SDF[shape](u + np.float32(cx), v + np.float32(cy))


def _texture(
    kind: str, u: np.ndarray, v: np.ndarray, freq: float, phase: float, spots: np.ndarray
) -> np.ndarray | None:
    """Texture values in [-1, 1] fixed to the object (None for "none")."""
    w = np.float32(freq * np.pi)
    if kind == "stripes":
        return np.sin(w * u + phase)
    if kind == "checks":
        return np.sin(w * u + phase) * np.sin(w * v + phase)
    if kind == "rings":
        return np.sin(w * np.sqrt(u * u + v * v) + phase)
    if kind == "waves":
        return 0.6 * np.sin(w * (u + v) + phase) + 0.4 * np.cos(np.float32(1.7) * w * v)
    if kind == "none":
        return None
    if kind == "dots":  # a regular grid of round dots, bright on a darker field
        grid = np.cos(w * u + phase) * np.cos(w * v + phase)
        return np.clip(4.0 * (grid - 0.45), -1.0, 1.0)
    if kind == "spots":  # a few irregular round spots, dark on a lighter field
        near = np.full(u.shape, np.inf, dtype=np.float32)
        for su, sv, sr in spots:
            near = np.minimum(near, np.sqrt((u - su) ** 2 + (v - sv) ** 2) - sr)
        return np.clip(6.0 * near, -1.0, 1.0)
    raise ValueError(f"unknown texture {kind!r}; known: {VARIED_TEXTURES}")


# --- sampling -------------------------------------------------------------------------------
def sample_scene(config: SceneConfig, rng: np.random.Generator) -> tuple[Scene, Poses]:
    """Draw a scene and its objects' initial poses; all randomness comes from ``rng``.

    Initial poses: rotated by a uniform angle, radius ``config.radius * size``, centre uniform
    in ``[m, S - 1 - m]^2`` with ``m = margin * radius`` (mostly in view). Objects may overlap.

    Returns:
        (scene, poses) for K objects, K drawn uniformly in ``config.objects``.
    """
    if not isinstance(config, SceneConfig):
        raise TypeError(f"config must be a SceneConfig, got {type(config).__name__}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    s = config.size
    assert config.shapes is not None  # resolved in __post_init__
    k = int(rng.integers(config.objects[0], config.objects[1] + 1))
    shapes = tuple(config.shapes[int(i)] for i in rng.integers(0, len(config.shapes), size=k))
    depth = rng.permutation(k).astype(np.int64)
    radii = rng.uniform(*config.radius, size=k) * s
    angles = rng.uniform(0, 2 * np.pi, size=k)
    margin = config.margin * radii
    centers = margin[:, None] + rng.uniform(0, 1, size=(k, 2)) * np.maximum(
        s - 1 - 2 * margin[:, None], 0.0
    )
    kinds = _TEXTURES_OF[config.style]
    textures = tuple(kinds[int(i)] for i in rng.integers(0, len(kinds), size=k))
    tex_freq = rng.uniform(2.0, 3.5, size=k)
    tex_phase = rng.uniform(0, 2 * np.pi, size=k)
    spots = np.zeros((k, _SPOTS, 3), dtype=np.float32)
    for j, kind in enumerate(textures):
        if kind == "spots":
            ang = rng.uniform(0, 2 * np.pi, _SPOTS)
            rad = np.sqrt(rng.uniform(0, 0.6, _SPOTS))
            spots[j] = np.stack(
                [rad * np.cos(ang), rad * np.sin(ang), rng.uniform(0.12, 0.28, _SPOTS)], -1
            )
    common: dict[str, Any] = {
        "style": config.style,
        "size": s,
        "shapes": shapes,
        "textures": textures,
        "texture_freq": tex_freq,
        "texture_phase": tex_phase,
        "texture_spots": spots,
        "texture_amplitude": float(config.texture),
        "depth": depth,
        "radii": radii,
        "noise_std": float(config.noise_std),
        "outline": float(config.outline),
        "outline_color": np.asarray(config.outline_color, np.float32),
    }
    if config.style == "classic":
        names_all = list(KEY_COLORS)
        picked = rng.permutation(len(names_all))[:k]
        colors = np.array([KEY_COLORS[names_all[i]] for i in picked], dtype=np.float32)
        names = tuple(f"{names_all[i]} {shape}" for i, shape in zip(picked, shapes))
        background = _smooth_background(s, config.background_contrast, rng)
        scene = Scene(background=background, colors=colors, names=names, **common)
    else:
        scene = _varied_scene(config, rng, common)
    if config.outline > 0 and config.outline_share < 1:  # drawn last: other scenes unchanged
        scene.bordered = tuple(bool(b) for b in rng.random(k) < config.outline_share)
    return scene, Poses.from_angles(centers, angles, radii)


def _bicubic(rng: np.random.Generator, cells: int, s: int, channels: int = 0) -> np.ndarray:
    """Smooth random field: a (cells, cells[, channels]) normal grid upsampled bicubically."""
    if channels == 0:
        coarse = rng.standard_normal((cells, cells)).astype(np.float32)
        return np.asarray(Image.fromarray(coarse).resize((s, s), Image.Resampling.BICUBIC))
    coarse = rng.standard_normal((cells, cells, channels)).astype(np.float32)
    return np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(coarse[..., c])).resize(
                    (s, s), Image.Resampling.BICUBIC
                )
            )
            for c in range(channels)
        ],
        axis=-1,
    )


def _smooth_background(s: int, contrast: float, rng: np.random.Generator) -> np.ndarray:
    """Classic background: smooth, low-saturation noise, float32 (S, S, 3) grey levels."""
    base_grey = rng.uniform(95, 165)
    tint = rng.normal(0, 8, size=3)
    lum = np.zeros((s, s), np.float32)
    for cells, amp in ((int(rng.integers(3, 6)), 1.0), (int(rng.integers(8, 14)), 0.35)):
        lum += amp * _bicubic(rng, cells, s)
    lum *= contrast / max(float(np.abs(lum).max()), 1e-6)
    chroma = _bicubic(rng, 4, s, channels=3)
    bg = base_grey + tint + lum[..., None] + 5.0 * chroma
    return np.clip(bg, 0, 255).astype(np.float32)


def _coords(s: int) -> tuple[np.ndarray, np.ndarray]:
    """(S, S) x and y in [-1, 1] (pixel centres)."""
    g = ((2.0 * np.arange(s) + 1.0) / s - 1.0).astype(np.float32)
    return np.meshgrid(g, g)


def _varied_background(
    family: str, s: int, contrast: float, rng: np.random.Generator
) -> np.ndarray:
    """One varied-style background (before lighting), float32 (S, S, 3) grey levels."""
    x, y = _coords(s)
    base = rng.uniform(85, 170) + rng.normal(0, 12, size=3)  # low-to-mid saturation
    if family == "smooth":
        return _smooth_background(s, contrast, rng) + rng.normal(0, 8, size=3)
    if family == "gradient":
        other = rng.uniform(85, 170) + rng.normal(0, 14, size=3)
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * x + np.sin(angle) * y) / math.sqrt(2.0) * 0.5 + 0.5  # 0..1
        img = base * (1 - t[..., None]) + other * t[..., None]
        return img + 0.15 * contrast * _bicubic(rng, 6, s)[..., None]
    if family in ("stripes", "tiles"):
        period = rng.uniform(6.0, 14.0) if family == "stripes" else rng.uniform(8.0, 16.0)
        angle = rng.uniform(0, np.pi)
        w = np.float32(2 * np.pi * s / 2 / period)
        a = np.cos(angle) * x + np.sin(angle) * y
        if family == "stripes":
            pattern = np.tanh(2.5 * np.sin(w * a))
        else:
            b = -np.sin(angle) * x + np.cos(angle) * y
            pattern = np.tanh(2.5 * np.sin(w * a)) * np.tanh(2.5 * np.sin(w * b))
        alt = rng.normal(0, 6, size=3)  # the two tones differ a little in hue too
        amp = 0.45 * contrast
        return base + pattern[..., None] * (amp + alt)
    if family == "granite":
        smooth = 0.6 * contrast * _bicubic(rng, int(rng.integers(4, 8)), s)
        grain = rng.normal(0, 0.35 * contrast, size=(s, s)).astype(np.float32)
        speck = rng.uniform(size=(s, s)) < 0.06
        grain += np.where(speck, rng.choice([-1.0, 1.0], size=(s, s)) * 0.9 * contrast, 0.0)
        tint = rng.normal(0, 4, size=(s, s, 3)).astype(np.float32)
        return base + (smooth + grain)[..., None] + tint
    if family == "vignette":
        cx, cy = rng.uniform(-0.4, 0.4, size=2)
        r2 = ((x - cx) ** 2 + (y - cy) ** 2) / 2.0
        fall = rng.uniform(0.25, 0.45)
        return base * (1.0 - fall * r2)[..., None] + 0.2 * contrast * _bicubic(rng, 5, s)[
            ..., None
        ]
    raise ValueError(f"unknown background family {family!r}; known: {BACKGROUND_FAMILIES}")


def _varied_scene(
    config: SceneConfig, rng: np.random.Generator, common: dict[str, Any]
) -> Scene:
    s, k = config.size, len(common["shapes"])
    family = BACKGROUND_FAMILIES[int(rng.integers(len(BACKGROUND_FAMILIES)))]
    raw = np.clip(_varied_background(family, s, config.background_contrast, rng), 0, 255)
    raw = raw.astype(np.float32)
    # illumination: a linear gradient of brightness, 1 +- amplitude, in a random direction
    amplitude = float(rng.uniform(*config.light_amplitude))
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    x, y = _coords(s)
    ramp = direction[0] * x + direction[1] * y
    ramp /= max(float(np.abs(ramp).max()), 1e-6)
    light = (1.0 + amplitude * ramp).astype(np.float32)
    background = np.clip(raw * light[..., None], 0, 255).astype(np.float32)
    # shadows: one whole-pixel offset for the scene, 1..3 px per axis at most, never (0, 0)
    length = rng.uniform(*config.shadow_offset)
    theta = rng.uniform(0, 2 * np.pi)
    ox = int(np.clip(round(length * math.cos(theta)), -3, 3))
    oy = int(np.clip(round(length * math.sin(theta)), -3, 3))
    if ox == 0 and oy == 0:
        ox = 1 if math.cos(theta) >= 0 else -1
    strength = float(rng.uniform(*config.shadow_strength))
    blur = float(rng.uniform(*config.shadow_blur))
    # colours: HSV, apart from each other and from the (shadowed) background
    mean_bg = raw.reshape(-1, 3).mean(0)
    refs = [mean_bg, mean_bg * (1 - strength)]
    colors = np.zeros((k, 3), dtype=np.float32)
    hues = np.zeros(k)
    for j in range(k):
        best, best_score, best_hue = None, -np.inf, 0.0
        for _ in range(200):
            h = float(rng.uniform(0, 1))
            rgb = 255.0 * np.array(
                colorsys.hsv_to_rgb(h, rng.uniform(0.45, 1.0), rng.uniform(0.6, 1.0))
            )
            d_obj = min((float(np.linalg.norm(rgb - c)) for c in colors[:j]), default=np.inf)
            d_bg = min(float(np.linalg.norm(rgb - r)) for r in refs)
            score = min(d_obj - config.min_color_distance, d_bg - config.background_distance)
            if score > best_score:
                best, best_score, best_hue = rgb, score, h
            if score >= 0:
                break
        assert best is not None
        colors[j], hues[j] = best, best_hue
    names = tuple(f"hue {int(h * 360) % 360} {shape}" for h, shape in zip(hues, common["shapes"]))
    return Scene(
        background=background,
        colors=colors,
        names=names,
        background_family=family,
        light=light,
        light_direction=direction,
        light_amplitude=amplitude,
        shadow_offset=(ox, oy),
        shadow_strength=strength,
        shadow_blur=blur,
        **common,
    )


# --- rendering ------------------------------------------------------------------------------
def _check(scene: Scene, poses: Poses) -> None:
    if not isinstance(scene, Scene):
        raise TypeError(f"scene must be a Scene, got {type(scene).__name__}")
    if not isinstance(poses, Poses):
        raise TypeError(f"poses must be a Poses, got {type(poses).__name__}")
    if poses.num_objects != scene.num_objects:
        raise ValueError(
            f"poses hold {poses.num_objects} objects, the scene has {scene.num_objects}"
        )


def render_background(scene: Scene) -> np.ndarray:
    """Draw the frame with no objects, shadows or noise (gain 1): uint8 (S, S, 3)."""
    if not isinstance(scene, Scene):
        raise TypeError(f"scene must be a Scene, got {type(scene).__name__}")
    return np.clip(scene.background + 0.5, 0, 255).astype(np.uint8)


def render(
    scene: Scene, poses: Poses, *, rng: np.random.Generator | None = None, gain: float = 1.0
) -> Rendered:
    """Draw ``scene`` with its objects at ``poses``.

    Back to front (``scene.depth``): shadows (varied style) darken the lit background, then each
    object is blended over the canvas by its antialiased coverage, coloured ``color * (1 +
    texture_amplitude * texture) * light``. The whole frame is multiplied by ``gain`` (a global
    brightness factor, e.g. a flicker), then sensor noise ``N(0, noise_std^2)`` is added when
    ``rng`` is given (from a 256-entry table of normal quantiles, one random byte a value), and
    the result is rounded to uint8.

    Args:
        scene: the scene (K objects, size S).
        poses: K poses.
        rng: noise generator (None: no noise).
        gain: global brightness factor (> 0).

    Returns:
        :class:`Rendered` (frame uint8 (S, S, 3), visible and full bool (K, S, S) masks).
    """
    _check(scene, poses)
    if not (isinstance(gain, int | float | np.floating) and math.isfinite(gain) and gain > 0):
        raise ValueError(f"gain must be a finite number > 0, got {gain!r}")
    static = _static(scene)
    canvas = scene.background.copy()
    full = np.zeros((scene.num_objects, scene.size, scene.size), dtype=bool)
    drawn, shadow_map = _object_distances(scene, poses, static)
    if shadow_map is not None:
        _cast_shadows(canvas, shadow_map, scene)
    _paint_objects(canvas, full, drawn, scene)
    frame = _to_uint8(canvas, gain, rng, static)
    return Rendered(frame, _visible_masks(full, static.front_to_back), full)


_Drawn = tuple[int, int, int, int, int, np.ndarray, np.ndarray, np.ndarray]
"""One object over its evaluation box: index j, the box x0, x1, y0, y1 in pixels (it may
reach outside the frame), then float32 (y1 - y0, x1 - x0) shape coordinates u, v and signed
distance."""


def _object_distances(scene: Scene, poses: Poses,
                      static: _Static) -> tuple[list[_Drawn], np.ndarray | None]:
    """Signed distances (pixels) of every object, back to front, over its box at ``poses``.

    Objects whose box misses the evaluated area are left out. With shadows (a varied scene of
    ``shadow_strength > 0``) the boxes reach past the frame and each object's blurred
    coverage is maxed into the returned float32 shadow map (padded by ``_SHADOW_PAD``), at
    the shadow offset; otherwise the map is None.
    """
    s = scene.size
    shadows = scene.shadow_strength > 0
    ramp = np.float32(2.0 * scene.shadow_blur + 1.0)
    margin = 1.5 + (float(ramp) / 2 if shadows else 0.0)
    ox, oy = scene.shadow_offset
    lo_eval, hi_eval = (-_EVAL_PAD, s + _EVAL_PAD) if shadows else (0, s)
    shadow_map = np.zeros((s + 2 * _SHADOW_PAD,) * 2, np.float32) if shadows else None
    half, zero, one = np.float32(0.5), np.float32(0.0), np.float32(1.0)
    centers, linear = poses.centers.tolist(), poses.linear.tolist()
    drawn: list[_Drawn] = []
    for j in static.back_to_front:
        shape = scene.shapes[j]
        (l00, l01), (l10, l11) = linear[j]
        cx, cy = centers[j]
        extent = _geometry(shape)[2]
        hx = extent * math.hypot(l00, l01) + margin
        hy = extent * math.hypot(l10, l11) + margin
        x0, x1 = max(math.floor(cx - hx), lo_eval), min(math.ceil(cx + hx) + 1, hi_eval)
        y0, y1 = max(math.floor(cy - hy), lo_eval), min(math.ceil(cy + hy) + 1, hi_eval)
        if x0 >= x1 or y0 >= y1:
            continue
        det = l00 * l11 - l01 * l10
        dx = static.grid[x0 + _EVAL_PAD : x1 + _EVAL_PAD] - np.float32(cx)
        dy = static.grid[y0 + _EVAL_PAD : y1 + _EVAL_PAD, None] - np.float32(cy)
        u = np.float32(l11 / det) * dx + np.float32(-l01 / det) * dy
        v = np.float32(-l10 / det) * dx + np.float32(l00 / det) * dy
        sd = shape_sdf(shape, u, v)
        sd *= np.float32(math.sqrt(abs(det)))  # pixels
        if shadow_map is not None:
            alpha = np.minimum(np.maximum(half - sd / ramp, zero), one)
            p = _SHADOW_PAD
            region = shadow_map[y0 + oy + p : y1 + oy + p, x0 + ox + p : x1 + ox + p]
            np.maximum(region, alpha, out=region)
        drawn.append((j, x0, x1, y0, y1, u, v, sd))
    return drawn, shadow_map


def _cast_shadows(canvas: np.ndarray, shadow_map: np.ndarray, scene: Scene) -> None:
    """Darken the float32 (S, S, 3) ``canvas`` in place by the frame's part of the shadow map."""
    p, s = _SHADOW_PAD, scene.size
    shade = shadow_map[p : p + s, p : p + s]
    shade *= np.float32(-scene.shadow_strength)
    shade += np.float32(1.0)
    canvas *= shade[..., None]


def _paint_objects(canvas: np.ndarray, full: np.ndarray, drawn: list[_Drawn],
                   scene: Scene) -> None:
    """Blend the ``drawn`` objects, in order, over ``canvas`` by their antialiased coverage.

    Writes each object's full mask (coverage > 1/2) into bool (K, S, S) ``full``.
    """
    s, light = scene.size, scene.light
    half, zero, one = np.float32(0.5), np.float32(0.0), np.float32(1.0)
    amp = np.float32(scene.texture_amplitude)
    freq, phase = scene.texture_freq.tolist(), scene.texture_phase.tolist()
    for j, x0, x1, y0, y1, u, v, sd in drawn:
        a0, a1, b0, b1 = max(x0, 0), min(x1, s), max(y0, 0), min(y1, s)  # inside the frame
        if a0 >= a1 or b0 >= b1:
            continue
        if a0 != x0 or a1 != x1 or b0 != y0 or b1 != y1:
            sl = (slice(b0 - y0, b1 - y0), slice(a0 - x0, a1 - x0))
            u, v, sd = u[sl], v[sl], sd[sl]
        cover = np.minimum(np.maximum(half - sd, zero), one)
        np.greater(cover, half, out=full[j, b0:b1, a0:a1])
        tex = _texture(
            scene.textures[j], u, v, freq[j], phase[j], scene.texture_spots[j]
        )
        if tex is None:
            gain_map = None if light is None else light[b0:b1, a0:a1]
        else:
            gain_map = tex * amp
            gain_map += one
            if light is not None:
                gain_map *= light[b0:b1, a0:a1]
        if gain_map is None:
            paint = scene.colors[j]
        else:
            paint = gain_map[..., None] * scene.colors[j]
        if scene.outline > 0 and (scene.bordered is None or scene.bordered[j]):
            # the fill's own antialiased edge sits `outline` px inside
            fill = np.minimum(np.maximum(half - sd - np.float32(scene.outline), zero), one)
            border = scene.outline_color if light is None else (
                light[b0:b1, a0:a1, None] * scene.outline_color)
            paint = fill[..., None] * (paint - border) + border
        region = canvas[b0:b1, a0:a1]
        region += cover[..., None] * (paint - region)


def _to_uint8(canvas: np.ndarray, gain: float, rng: np.random.Generator | None,
              static: _Static) -> np.ndarray:
    """Round ``canvas`` to a uint8 (S, S, 3) frame after ``gain`` and the sensor noise.

    ``canvas`` is changed in place; the noise is added only when ``rng`` is given.
    """
    half, zero = np.float32(0.5), np.float32(0.0)
    if gain != 1.0:
        canvas *= np.float32(gain)
    if rng is not None and static.noise is not None:
        raw = np.frombuffer(rng.bytes(canvas.size), dtype=np.uint8).reshape(canvas.shape)
        canvas += np.take(static.noise, raw.astype(np.intp))  # noise + 0.5 (rounding)
    else:
        canvas += half
    np.maximum(canvas, zero, out=canvas)
    np.minimum(canvas, np.float32(255.0), out=canvas)
    return canvas.astype(np.uint8)


def _visible_masks(full: np.ndarray, front_to_back: list[int]) -> np.ndarray:
    """Bool (K, S, S) visible masks: each full mask minus the full masks in front of it."""
    visible = np.empty_like(full)
    taken = np.zeros(full.shape[1:], dtype=bool)
    for j in front_to_back:
        np.greater(full[j], taken, out=visible[j])  # full and not taken
        taken |= full[j]
    return visible


class _Static(NamedTuple):
    """What every render of one scene shares (cached on the scene)."""

    back_to_front: list[int]
    front_to_back: list[int]
    grid: np.ndarray  # float32 pixel coordinates -_EVAL_PAD .. S + _EVAL_PAD
    noise: np.ndarray | None  # float32 (256,) noise quantiles * noise_std + 0.5


def _static(scene: Scene) -> _Static:
    key = (scene.noise_std, tuple(scene.depth.tolist()), scene.size)
    cached = scene._static
    if cached is not None and cached[0] == key:
        return cached[1]
    noise = None
    if scene.noise_std > 0:
        noise = (_NORMAL_TABLE * np.float32(scene.noise_std) + np.float32(0.5)).astype(np.float32)
    static = _Static(
        back_to_front=np.argsort(-scene.depth, kind="stable").tolist(),
        front_to_back=np.argsort(scene.depth, kind="stable").tolist(),
        grid=np.arange(-_EVAL_PAD, scene.size + _EVAL_PAD, dtype=np.float32),
        noise=noise,
    )
    scene._static = (key, static)
    return static
