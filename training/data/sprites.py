"""Procedural sprites: training videos with exact ground truth, made in seconds, no dependency.

Every clip is one sprites scene (``lcvg_env.world.scene``: sampled once, rendered per frame
with the objects' poses of that frame) under a mild global illumination flicker and sensor
noise (so "the background must not change" is a real constraint, not a trivially true one).
Style "classic" (default): a static smooth, low-saturation background and 1-3 foreground
objects (disc, square, triangle, ellipse, star, cross) in saturated, distinct key colours with a
mild texture that moves with them. Style "varied": continuous colours, six background
families, twelve shapes, more textures, an illumination gradient and drop shadows (see
``lcvg_env.world.scene``), to train on one style and judge on the other. Objects move
smoothly (translation with slow turns, bounces at the borders, a slow rotation and a breathing
scale), may occlude each other (fixed depth order per clip) and stay mostly in view.

Each clip folder holds its frames, ``ground_truth.npz`` (see ``training.data.ground_truth``:
visible masks, their union, centroids, boxes, key colours, names) and ``metadata.pkl`` (one
dict per frame with the objects' true geometric state, including hidden parts: ``centers``
(K, 2) pixel (each shape's area centroid), ``angles`` (K,) radians, ``radii`` (K,) pixels,
``depth`` (K,) 0 = front, ``shapes`` K names).
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
from typing import Any

import numpy as np

from lcvg_env.configs import check_choices
from lcvg_env.world.scene import (
    CLASSIC_SHAPES,
    KEY_COLORS,
    STYLES,
    Poses,
    SceneConfig,
    Style,
    render,
    sample_scene,
)
from training.data.ground_truth import GroundTruth, ground_truth_from_masks, save_ground_truth
from training.data.layout import SPLITS
from training.data.png import write_png
from training.data.video import check_split_fractions

__all__ = [
    "KEY_COLORS",
    "SHAPES",
    "STYLES",
    "SpritesConfig",
    "SpritesSummary",
    "generate_sprites",
    "render_clip",
]

SHAPES = CLASSIC_SHAPES
"""Object shapes of the classic style (``lcvg_env.world.scene.CLASSIC_SHAPES``)."""

_FORMAT_VERSION = 2  # 2: rendered by lcvg_env.world.scene (centroid-centred shapes, styles)


@dataclass(frozen=True)
class SpritesConfig:
    """Everything that shapes a sprites dataset (the seed aside)."""

    size: int = 64
    """Frame height and width in pixels."""
    frames: int = 30
    """Frames per clip."""
    objects: tuple[int, int] = (1, 3)
    """Inclusive range of the number of objects per clip (classic: at most 6, one per key
    colour; varied: at most 8)."""
    shapes: tuple[str, ...] | None = None
    """Shapes to draw from; None (default) = every shape of the style. Resolved to a tuple."""
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
    """Amplitude (grey levels) of the background texture."""
    flicker: float = 0.03
    """Amplitude of the global illumination flicker (relative brightness)."""
    noise_std: float = 2.0
    """Standard deviation of the sensor noise (grey levels)."""
    margin: float = 0.5
    """Object centres stay at least ``margin * radius`` inside the frame (mostly in view)."""
    style: Style = "classic"
    """Scene style, one of ``STYLES`` ("classic", "varied"; see ``lcvg_env.world.scene``)."""
    outline: float = 0.0
    """Width (pixels) of a dark border just inside objects' edges (0: none)."""
    outline_share: float = 1.0
    """Chance that an object gets that border (each object drawn independently)."""

    def __post_init__(self) -> None:
        """Validate (the scene fields through :class:`SceneConfig`); resolve ``shapes``."""
        check_choices(self)
        if not isinstance(self.frames, int) or self.frames < 2:
            raise ValueError(f"frames must be an int >= 2, got {self.frames!r}")
        scene = self.scene_config()  # validates size, objects, shapes, style, ...
        object.__setattr__(self, "shapes", scene.shapes)
        a, b = self.speed
        if not 0 <= a <= b:
            raise ValueError(f"speed must be a range 0 <= lo <= hi, got {(a, b)!r}")
        for name in ("flicker", "turn_std", "rotation_speed", "scale_amplitude"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    def scene_config(self) -> SceneConfig:
        """Return the :class:`SceneConfig` of this dataset's scenes."""
        return SceneConfig(
            size=self.size,
            objects=self.objects,
            shapes=self.shapes,
            radius=self.radius,
            style=self.style,
            texture=self.texture,
            background_contrast=self.background_contrast,
            noise_std=self.noise_std,
            margin=self.margin,
            outline=self.outline,
            outline_share=self.outline_share,
        )

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

    The scene (background, colours, shapes, textures, depth; lighting and shadows for the
    varied style) is drawn once with ``lcvg_env.world.sample_scene``; every frame is drawn with
    ``lcvg_env.world.render`` at that frame's poses (smooth paths, slow rotation, breathing
    scale), the flicker as its ``gain``, the noise from ``rng``.

    Args:
        config: the dataset config.
        rng: the clip's random generator (all randomness comes from it).

    Returns:
        frames: uint8 (T, S, S, 3) RGB;
        gt: its :class:`GroundTruth` (visible masks, union, centroids, boxes, colours, names);
        metadata: one dict per frame (true centres, angles, radii, depth order, shapes).
    """
    if not isinstance(config, SpritesConfig):
        raise TypeError(f"config must be a SpritesConfig, got {type(config).__name__}")
    s, n_t = config.size, config.frames
    scene, start = sample_scene(config.scene_config(), rng)
    k = scene.num_objects

    # Trajectories: (T, K) centres, angles, radii.
    r0 = scene.radii
    start_angles = np.arctan2(start.linear[:, 1, 0], start.linear[:, 0, 0])
    log_amp = config.scale_amplitude * rng.uniform(0.3, 1.0, size=k)
    scale_w = rng.uniform(0.08, 0.3, size=k)
    scale_phase = rng.uniform(0, 2 * np.pi, size=k)
    steps = np.arange(n_t, dtype=np.float64)[:, None]
    radii = r0 * np.exp(log_amp * np.sin(scale_w * steps + scale_phase))  # (T, K)
    angles = start_angles + rng.uniform(
        -config.rotation_speed, config.rotation_speed, size=k
    ) * steps
    centers = _trajectories(config, rng, radii, start.centers)  # (T, K, 2)

    # Illumination flicker (global, smooth in time), applied as each frame's gain.
    w1, w2 = rng.uniform(0.2, 1.2, size=2)
    p1, p2 = rng.uniform(0, 2 * np.pi, size=2)
    t_axis = np.arange(n_t)
    gain = 1.0 + config.flicker * (0.6 * np.sin(w1 * t_axis + p1) + 0.4 * np.sin(w2 * t_axis + p2))

    frames = np.empty((n_t, s, s, 3), dtype=np.uint8)
    visible = np.empty((n_t, k, s, s), dtype=np.uint8)
    for t in range(n_t):
        out = render(
            scene, Poses.from_angles(centers[t], angles[t], radii[t]), rng=rng,
            gain=float(gain[t]),
        )
        frames[t] = out.frame
        visible[t] = out.visible
    colors = np.clip(np.round(scene.colors), 0, 255).astype(np.uint8)
    gt = ground_truth_from_masks(visible, colors=colors, names=scene.names)
    metadata = [
        {
            "centers": centers[t].astype(np.float32),
            "angles": angles[t].astype(np.float32),
            "radii": radii[t].astype(np.float32),
            "depth": scene.depth.astype(np.int64),
            "shapes": list(scene.shapes),
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
            12 KiB a 64x64 frame); 1-9 compressed ones (about half the size, several times
            slower; docs/performance.md).

    Returns:
        A :class:`SpritesSummary`.
    """
    import time

    config = config or SpritesConfig()
    _check_generate_args(clips, seed, png_level)
    check_split_fractions(val_fraction, test_fraction)
    root = Path(out)
    _prepare_root(root, overwrite)
    n_val, n_test = _split_sizes(clips, val_fraction, test_fraction)
    n_train = clips - n_val - n_test
    counts = {"train": n_train, "val": n_val, "test": n_test}
    start_time = time.perf_counter()
    _render_clips(config, seed, _clip_jobs(root, counts), workers, png_level, progress)
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


def _check_generate_args(clips: int, seed: int, png_level: int) -> None:
    """ValueError naming the received value for :func:`generate_sprites`' bad numbers."""
    if isinstance(clips, bool) or not isinstance(clips, int) or clips < 1:
        raise ValueError(f"clips must be an int >= 1, got {clips!r}")
    if not 0 <= png_level <= 9:
        raise ValueError(f"png_level must be in 0..9, got {png_level!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")


def _clip_jobs(root: Path, counts: dict[str, int]) -> list[tuple[int, str]]:
    """(clip index, clip folder) of every clip, numbered across splits in ``SPLITS`` order."""
    jobs: list[tuple[int, str]] = []
    for split in SPLITS:
        start = len(jobs)
        jobs.extend((start + i, str(root / split / f"{i:05d}")) for i in range(counts[split]))
    return jobs


def _render_clips(config: SpritesConfig, seed: int, jobs: list[tuple[int, str]],
                  workers: int | None, png_level: int, progress: bool) -> None:
    """Render and write the clips of ``jobs`` in batches, in ``workers`` processes.

    ``workers`` None: the number of CPUs, at most 8; 1 renders in-process.
    """
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


def _trajectories(
    config: SpritesConfig, rng: np.random.Generator, radii: np.ndarray, start: np.ndarray
) -> np.ndarray:
    """Smooth paths bouncing inside the frame from ``start`` (K, 2): (T, K, 2) pixel centres."""
    s = config.size
    n_t, k = int(radii.shape[0]), int(radii.shape[1])
    margin = (config.margin * np.asarray(radii)).tolist()  # (T, K)
    headings = rng.uniform(0, 2 * np.pi, size=k).tolist()
    speeds = (rng.uniform(*config.speed, size=k) * s).tolist()
    turns = rng.normal(0, config.turn_std, size=(n_t, k)).tolist()
    accel = np.exp(rng.normal(0, 0.05, size=(n_t, k))).tolist()
    lo_speed, hi_speed = config.speed[0] * s, config.speed[1] * s
    out = np.empty((n_t, k, 2), dtype=np.float64)
    for j in range(k):
        x, y = float(start[j, 0]), float(start[j, 1])
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
