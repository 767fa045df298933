"""Procedural sprites: training videos with exact ground truth, made in seconds, no dependency.

Every clip is a static textured background (smooth, low saturation) under a mild global
illumination flicker and sensor noise (so "the background must not change" is a real constraint,
not a trivially true one), with 1-3 foreground objects (disc, square, triangle, ellipse, star,
cross) in saturated, distinct key colours with a mild texture that moves with them. Objects move
smoothly (translation with slow turns, bounces at the borders, a slow rotation and a breathing
scale), may occlude each other (fixed depth order per clip) and stay mostly in view.

Each clip folder holds its frames, ``ground_truth.npz`` (see ``training.data.ground_truth``:
visible masks, their union, centroids, boxes, key colours, names) and ``metadata.pkl`` (one
dict per frame with the objects' true geometric state, including hidden parts: ``centers``
(K, 2) pixel, ``angles`` (K,) radians, ``radii`` (K,) pixels, ``depth`` (K,) 0 = front).
The whole set is a function of the seed (and the config): clip ``i`` uses the random generator
``numpy.random.default_rng([seed, i])``, whatever the number of workers.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
from PIL import Image

from training.data.ground_truth import GroundTruth, ground_truth_from_masks, save_ground_truth
from training.data.layout import SPLITS
from training.data.png import write_png

__all__ = [
    "KEY_COLORS",
    "SHAPES",
    "SpritesConfig",
    "SpritesSummary",
    "generate_sprites",
    "render_clip",
]

SHAPES = ("disc", "square", "triangle", "ellipse", "star", "cross")
"""Object shapes."""

KEY_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (35, 195, 55),
    "blue": (45, 85, 235),
    "yellow": (240, 215, 35),
    "magenta": (215, 50, 215),
    "cyan": (35, 205, 215),
}
"""Saturated key colours (pairwise RGB distance >= 120, far from the low-saturation background)."""

_FORMAT_VERSION = 1

_NORMAL_TABLE = np.array(
    [NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], dtype=np.float32
)
_NORMAL_TABLE /= _NORMAL_TABLE.std()  # unit variance


@dataclass(frozen=True)
class SpritesConfig:
    """Everything that shapes a sprites dataset (the seed aside)."""

    size: int = 64
    """Frame height and width in pixels."""
    frames: int = 30
    """Frames per clip."""
    objects: tuple[int, int] = (1, 3)
    """Inclusive range of the number of objects per clip (at most 6, one per key colour)."""
    shapes: tuple[str, ...] = SHAPES
    """Shapes to draw from."""
    radius: tuple[float, float] = (0.08, 0.14)
    """Object radius range, as a fraction of the frame size."""
    speed: tuple[float, float] = (0.015, 0.045)
    """Object speed range, fraction of the frame size per frame."""
    turn_std: float = 0.15
    """Standard deviation of the heading change per frame (radians): smooth curved paths."""
    rotation_speed: float = 0.08
    """Maximum rotation speed (radians per frame)."""
    scale_amplitude: float = 0.15
    """Amplitude of the breathing scale (log of the radius)."""
    texture: float = 0.1
    """Relative amplitude of the texture on objects."""
    background_contrast: float = 28.0
    """Amplitude (grey levels) of the smooth background texture."""
    flicker: float = 0.03
    """Amplitude of the global illumination flicker (relative brightness)."""
    noise_std: float = 2.0
    """Standard deviation of the sensor noise (grey levels)."""
    margin: float = 0.5
    """Object centres stay at least ``margin * radius`` inside the frame (mostly in view)."""

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 8:
            raise ValueError(f"size must be an int >= 8, got {self.size!r}")
        if not isinstance(self.frames, int) or self.frames < 2:
            raise ValueError(f"frames must be an int >= 2, got {self.frames!r}")
        lo, hi = self.objects
        if not (1 <= lo <= hi <= len(KEY_COLORS)):
            raise ValueError(
                f"objects must be a range (lo, hi) with 1 <= lo <= hi <= {len(KEY_COLORS)}, "
                f"got {self.objects!r}"
            )
        bad = [s for s in self.shapes if s not in SHAPES]
        if bad or not self.shapes:
            raise ValueError(f"shapes must be a non-empty subset of {SHAPES}, got {self.shapes!r}")
        for name in ("radius", "speed"):
            a, b = getattr(self, name)
            if not 0 <= a <= b:
                raise ValueError(f"{name} must be a range 0 <= lo <= hi, got {(a, b)!r}")
        for name in ("flicker", "noise_std", "texture", "background_contrast", "margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass
class SpritesSummary:
    """What :func:`generate_sprites` wrote."""

    root: Path
    """The dataset root."""
    clips: dict[str, int] = field(default_factory=dict)
    """Clips per split."""
    seconds: float = 0.0
    """Wall time."""


def render_clip(
    config: SpritesConfig, rng: np.random.Generator
) -> tuple[np.ndarray, GroundTruth, list[dict[str, Any]]]:
    """Render one clip.

    Args:
        config: the dataset config.
        rng: the clip's random generator (all randomness comes from it).

    Returns:
        frames: uint8 (T, S, S, 3) RGB;
        gt: its :class:`GroundTruth` (visible masks, union, centroids, boxes, colours, names);
        metadata: one dict per frame (true centres, angles, radii, depth order).
    """
    if not isinstance(config, SpritesConfig):
        raise TypeError(f"config must be a SpritesConfig, got {type(config).__name__}")
    s, n_t = config.size, config.frames
    k = int(rng.integers(config.objects[0], config.objects[1] + 1))
    color_names = list(KEY_COLORS)
    picked = rng.permutation(len(color_names))[:k]
    colors = np.array([KEY_COLORS[color_names[i]] for i in picked], dtype=np.float32)
    shapes = [config.shapes[int(i)] for i in rng.integers(0, len(config.shapes), size=k)]
    names = tuple(f"{color_names[i]} {shape}" for i, shape in zip(picked, shapes))
    depth = rng.permutation(k)  # 0 = front

    background = _background(config, rng)  # (S, S, 3) float32

    # Trajectories: (T, K) centres, angles, radii.
    r0 = rng.uniform(*config.radius, size=k) * s
    log_amp = config.scale_amplitude * rng.uniform(0.3, 1.0, size=k)
    scale_w = rng.uniform(0.08, 0.3, size=k)
    scale_phase = rng.uniform(0, 2 * np.pi, size=k)
    steps = np.arange(n_t, dtype=np.float64)[:, None]
    radii = r0 * np.exp(log_amp * np.sin(scale_w * steps + scale_phase))  # (T, K)
    angles = rng.uniform(0, 2 * np.pi, size=k) + rng.uniform(
        -config.rotation_speed, config.rotation_speed, size=k
    ) * steps
    centers = _trajectories(config, rng, radii)  # (T, K, 2)
    textures = rng.integers(0, 4, size=k)
    tex_freq = rng.uniform(2.0, 3.5, size=k)
    tex_phase = rng.uniform(0, 2 * np.pi, size=k)

    # Each object is drawn in a square window that holds it whatever its scale and angle, on a
    # canvas padded by one window so windows never fall off the edge.
    win = int(math.ceil(2 * 1.3 * radii.max() + 4))
    pad = win
    canvas = np.zeros((n_t, s + 2 * pad, s + 2 * pad, 3), dtype=np.float32)
    canvas[:, pad : pad + s, pad : pad + s] = background
    canvas_masks = np.zeros((k, n_t, s + 2 * pad, s + 2 * pad), dtype=bool)
    grid = np.arange(win, dtype=np.float32)
    for j in np.argsort(-depth):  # back to front
        x0 = np.floor(centers[:, j, 0] - win / 2).astype(np.int64)  # (T,)
        y0 = np.floor(centers[:, j, 1] - win / 2).astype(np.int64)
        x0 = np.clip(x0, -pad, s + pad - win)
        y0 = np.clip(y0, -pad, s + pad - win)
        dx = (x0[:, None] + grid[None] - centers[:, j, 0, None]).astype(np.float32)  # (T, win)
        dy = (y0[:, None] + grid[None] - centers[:, j, 1, None]).astype(np.float32)
        cos = np.cos(angles[:, j]).astype(np.float32)[:, None, None]
        sin = np.sin(angles[:, j]).astype(np.float32)[:, None, None]
        rad = radii[:, j].astype(np.float32)[:, None, None]
        u = (cos * dx[:, None, :] + sin * dy[:, :, None]) / rad  # (T, win, win)
        v = (-sin * dx[:, None, :] + cos * dy[:, :, None]) / rad
        sd = _shape_sdf(shapes[j], u, v) * rad  # signed distance in pixels
        cover = np.clip(0.5 - sd, 0.0, 1.0)  # antialiased coverage
        tex = _texture(int(textures[j]), u, v, float(tex_freq[j]), float(tex_phase[j]))
        shade = colors[j] * (1.0 + config.texture * tex[..., None])  # (T, win, win, 3)
        inside = cover > 0.5
        for t in range(n_t):
            ys = slice(int(y0[t]) + pad, int(y0[t]) + pad + win)
            xs = slice(int(x0[t]) + pad, int(x0[t]) + pad + win)
            region = canvas[t, ys, xs]
            c = cover[t, ..., None]
            region += c * (shade[t] - region)
            canvas_masks[j, t, ys, xs] = inside[t]

    frames_f = canvas[:, pad : pad + s, pad : pad + s]
    # Illumination flicker (global, smooth in time) and sensor noise.
    w1, w2 = rng.uniform(0.2, 1.2, size=2)
    p1, p2 = rng.uniform(0, 2 * np.pi, size=2)
    t_axis = np.arange(n_t)
    gain = 1.0 + config.flicker * (0.6 * np.sin(w1 * t_axis + p1) + 0.4 * np.sin(w2 * t_axis + p2))
    frames_f = frames_f * gain.astype(np.float32)[:, None, None, None]
    if config.noise_std > 0:
        # Gaussian sensor noise through a 256-entry quantile table (8x faster than normals).
        raw = np.frombuffer(rng.bytes(frames_f.size), dtype=np.uint8).reshape(frames_f.shape)
        frames_f += np.take(_NORMAL_TABLE, raw.astype(np.intp)) * np.float32(config.noise_std)
    frames = np.clip(frames_f + 0.5, 0, 255).astype(np.uint8)

    # Visible masks: front objects hide the ones behind.
    full = canvas_masks[:, :, pad : pad + s, pad : pad + s]  # (K, T, S, S)
    visible = np.zeros((n_t, k, s, s), dtype=np.uint8)
    taken = np.zeros((n_t, s, s), dtype=bool)
    for j in np.argsort(depth):  # front to back
        vis = full[j] & ~taken
        visible[:, j] = vis
        taken |= full[j]
    gt = ground_truth_from_masks(visible, colors=colors.astype(np.uint8), names=names)
    metadata = [
        {
            "centers": centers[t].astype(np.float32),
            "angles": angles[t].astype(np.float32),
            "radii": radii[t].astype(np.float32),
            "depth": depth.astype(np.int64),
            "shapes": list(shapes),
        }
        for t in range(n_t)
    ]
    return frames, gt, metadata


def generate_sprites(
    out: str | os.PathLike[str],
    clips: int,
    seed: int = 0,
    config: SpritesConfig | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    png_level: int = 0,
) -> SpritesSummary:
    """Write a sprites dataset in the split layout ``out/{train,val,test}/NNNNN/``.

    Args:
        out: dataset root (created; must be empty unless ``overwrite``).
        clips: total number of clips, split by the fractions (train gets the rest).
        seed: the seed; the same seed and config give the same files.
        config: rendering config (default :class:`SpritesConfig`).
        val_fraction: fraction of the clips for val.
        test_fraction: fraction of the clips for test.
        workers: processes (default: the number of CPUs, at most 8; 1 renders in-process).
        overwrite: replace a previous sprites dataset at ``out``.
        progress: show a progress bar.
        png_level: 0 writes unfiltered, uncompressed PNGs (fastest to write and to load;
            12 KiB a 64x64 frame); 1-9 compressed ones (about half the size, ~3x slower).

    Returns:
        A :class:`SpritesSummary`.
    """
    import time

    config = config or SpritesConfig()
    if isinstance(clips, bool) or not isinstance(clips, int) or clips < 1:
        raise ValueError(f"clips must be an int >= 1, got {clips!r}")
    if not 0 <= png_level <= 9:
        raise ValueError(f"png_level must be in 0..9, got {png_level!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= frac < 1:
            raise ValueError(f"{name} must be in [0, 1), got {frac!r}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}"
        )
    root = Path(out)
    _prepare_root(root, overwrite)
    n_val, n_test = _split_sizes(clips, val_fraction, test_fraction)
    n_train = clips - n_val - n_test
    counts = {"train": n_train, "val": n_val, "test": n_test}
    jobs: list[tuple[int, str]] = []
    for split in SPLITS:
        start = len(jobs)
        jobs.extend((start + i, str(root / split / f"{i:05d}")) for i in range(counts[split]))
    start_time = time.perf_counter()
    workers = min(os.cpu_count() or 1, 8) if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    chunk = max(1, min(64, len(jobs) // (workers * 4) or 1))
    batches = [jobs[i : i + chunk] for i in range(0, len(jobs), chunk)]
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="clip", desc="sprites", disable=not progress)
    if workers == 1 or len(batches) == 1:
        for batch in batches:
            _render_batch(config, seed, batch, png_level)
            bar.update(len(batch))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            n_batches = len(batches)
            for n in pool.map(
                _render_batch, [config] * n_batches, [seed] * n_batches, batches,
                [png_level] * n_batches,
            ):
                bar.update(n)
    bar.close()
    info = {
        "generator": "lcvg sprites",
        "format_version": _FORMAT_VERSION,
        "seed": seed,
        "clips": counts,
        "config": config.to_dict(),
        "png_level": png_level,
        "ground_truth": "ground_truth.npz per clip, see training/data/ground_truth.py",
    }
    (root / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return SpritesSummary(root=root, clips=counts, seconds=time.perf_counter() - start_time)


def _split_sizes(clips: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Clips for (val, test): rounded, at least one each (when asked) once there are 3 clips."""
    sizes = []
    for frac in (val_fraction, test_fraction):
        n = int(round(clips * frac))
        if frac > 0 and clips >= 3:
            n = max(n, 1)
        sizes.append(n)
    n_val, n_test = sizes
    while clips - n_val - n_test < 1:  # train keeps at least one clip
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def _render_batch(
    config: SpritesConfig, seed: int, batch: list[tuple[int, str]], png_level: int = 0
) -> int:
    for index, folder in batch:
        rng = np.random.default_rng([seed, index])
        frames, gt, metadata = render_clip(config, rng)
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(frames):
            write_png(path / f"{t:05d}.png", frame, png_level)
        save_ground_truth(path, gt)
        with open(path / "metadata.pkl", "wb") as f:
            pickle.dump(metadata, f, protocol=4)
    return len(batch)


def _prepare_root(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        info = root / "info.json"
        ours = False
        if info.is_file():
            try:
                ours = json.loads(info.read_text()).get("generator") == "lcvg sprites"
            except (OSError, ValueError):
                ours = False
        if not overwrite or not ours:
            what = "a previous sprites dataset" if ours else "other files"
            hint = " (pass overwrite=True / --overwrite)" if ours else " (choose an empty folder)"
            raise FileExistsError(f"{root} is not empty: it holds {what}{hint}")
        for split in SPLITS:
            if (root / split).is_dir():
                shutil.rmtree(root / split)
        info.unlink()
    root.mkdir(parents=True, exist_ok=True)


def _background(config: SpritesConfig, rng: np.random.Generator) -> np.ndarray:
    """Smooth, low-saturation texture: (S, S, 3) float32 in grey levels."""
    s = config.size
    base_grey = rng.uniform(95, 165)
    tint = rng.normal(0, 8, size=3)  # low saturation
    lum = np.zeros((s, s), np.float32)
    for cells, amp in ((int(rng.integers(3, 6)), 1.0), (int(rng.integers(8, 14)), 0.35)):
        coarse = rng.standard_normal((cells, cells)).astype(np.float32)
        img = Image.fromarray(coarse).resize((s, s), Image.Resampling.BICUBIC)
        lum += amp * np.asarray(img, dtype=np.float32)
    lum *= config.background_contrast / max(float(np.abs(lum).max()), 1e-6)
    chroma = rng.standard_normal((4, 4, 3)).astype(np.float32)
    chroma_img = np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(chroma[..., c])).resize(
                    (s, s), Image.Resampling.BICUBIC
                )
            )
            for c in range(3)
        ],
        axis=-1,
    )
    bg = base_grey + tint + lum[..., None] + 5.0 * chroma_img
    return np.clip(bg, 0, 255).astype(np.float32)


def _trajectories(
    config: SpritesConfig, rng: np.random.Generator, radii: np.ndarray
) -> np.ndarray:
    """Smooth paths bouncing inside the frame: (T, K, 2) pixel centres."""
    s = config.size
    n_t, k = int(radii.shape[0]), int(radii.shape[1])
    margin = (config.margin * np.asarray(radii)).tolist()  # (T, K)
    start_x = rng.uniform(0, 1, size=k).tolist()
    start_y = rng.uniform(0, 1, size=k).tolist()
    headings = rng.uniform(0, 2 * np.pi, size=k).tolist()
    speeds = (rng.uniform(*config.speed, size=k) * s).tolist()
    turns = rng.normal(0, config.turn_std, size=(n_t, k)).tolist()
    accel = np.exp(rng.normal(0, 0.05, size=(n_t, k))).tolist()
    lo_speed, hi_speed = config.speed[0] * s, config.speed[1] * s
    out = np.empty((n_t, k, 2), dtype=np.float64)
    for j in range(k):
        m = margin[0][j]
        x = m + start_x[j] * max(s - 1 - 2 * m, 0.0)
        y = m + start_y[j] * max(s - 1 - 2 * m, 0.0)
        heading, speed = headings[j], speeds[j]
        for t in range(n_t):
            out[t, j] = (x, y)
            heading += turns[t][j]
            speed = min(max(speed * accel[t][j], lo_speed), hi_speed)
            x += math.cos(heading) * speed
            y += math.sin(heading) * speed
            m = margin[min(t + 1, n_t - 1)][j]
            lo, hi = m, s - 1 - m
            if x < lo or x > hi:  # bounce: mirror the position and the heading
                x = 2 * lo - x if x < lo else 2 * hi - x
                heading = math.pi - heading
            if y < lo or y > hi:
                y = 2 * lo - y if y < lo else 2 * hi - y
                heading = -heading
            x = min(max(x, 0.0), s - 1.0)
            y = min(max(y, 0.0), s - 1.0)
    return out


def _shape_sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) in units of the object radius."""
    if shape == "disc":
        return np.sqrt(u * u + v * v) - 1.0
    if shape == "square":
        return _box(u, v, 0.85, 0.85)
    if shape == "ellipse":
        a, b = 1.2, 0.7
        return (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1.0) * b
    if shape == "cross":
        return np.minimum(_box(u, v, 1.05, 0.36), _box(u, v, 0.36, 1.05))
    if shape == "triangle":
        r = 1.05  # half the side length
        k3 = math.sqrt(3.0)
        px = np.abs(u) - r
        py = -v + r / k3  # apex up
        swap = px + k3 * py > 0
        qx = np.where(swap, (px - k3 * py) / 2, px)
        qy = np.where(swap, (-k3 * px - py) / 2, py)
        qx = qx - np.clip(qx, -2 * r, 0)
        return -np.sqrt(qx * qx + qy * qy) * np.sign(qy)
    if shape == "star":
        r = np.sqrt(u * u + v * v)
        phase = (np.arctan2(v, u) * (5 / (2 * np.pi)) + 0.25) % 1.0
        tri = np.abs(phase - 0.5) * 2  # 1 at the tips, 0 between them
        edge = 0.55 + (1.25 - 0.55) * tri
        return (r - edge) * 0.6
    raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


def _box(u: np.ndarray, v: np.ndarray, bx: float, by: float) -> np.ndarray:
    qx = np.abs(u) - bx
    qy = np.abs(v) - by
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _texture(kind: int, u: np.ndarray, v: np.ndarray, freq: float, phase: float) -> np.ndarray:
    """Texture values in [-1, 1], fixed to the object (it moves and turns with it)."""
    if kind == 0:  # stripes
        return np.sin(freq * np.pi * u + phase)
    if kind == 1:  # checks
        return np.sin(freq * np.pi * u + phase) * np.sin(freq * np.pi * v + phase)
    if kind == 2:  # rings
        return np.sin(freq * np.pi * np.sqrt(u * u + v * v) + phase)
    return 0.6 * np.sin(freq * np.pi * (u + v) + phase) + 0.4 * np.cos(freq * 1.7 * np.pi * v)
