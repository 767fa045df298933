"""Paired evaluation: a learned simulator against its ground-truth twin, with the same actions.

For every episode a twin world with true dynamics (``lcvg_env.world.twin.SpritesRealEnv``)
draws a scene; the learned environment (the batched ``LCVGVectorEnv`` of a checkpoint) starts
from the twin's first frame, its objects are matched to the twin's (object k is the same
object in both, as ``lcvg_env.world.pairing.paired_reset`` does for one pair), and both run
the same scripted actions (:func:`action_program`). A third system, the copy-paste baseline
(:class:`CopyPaste`: no generator, the first frame's object pixels moved by the commanded
motion), runs the same actions too. Every frame of both systems is scored against the twin's
frame of the same step by ``training.paired_metrics`` (objects found by their true colours).

:func:`run_paired` returns the per-step, per-object arrays and a flat summary: for each system
(prefix ``model/`` or ``copy_paste/``) and metric (:data:`SUMMARY_METRICS`) the value at steps
1, 16, 50 and 100 (those <= T) as ``<metric>@<step>`` and over all steps 1..T as
``<metric>@mean``. Object metrics pool every (episode, object) whose true object has visible
pixels at that step (``objects_unscored`` counts the others; position RMSEs pool the hits,
``position_rmse_px_apart`` the hits of objects apart from every other, ``colour_error_apart``
every visible object apart from every other: what overlaps, whose depth order a first frame
with the objects apart cannot tell, is left out); frame metrics are means over episodes.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from lcvg_env.configs import check_choices, check_ints
from lcvg_env.tracking import Tracking
from lcvg_env.world.scene import STYLES, SceneConfig, Style, check_looks_only, with_looks
from lcvg_env.world.twin import SpritesRealEnv
from training import paired_metrics as pm
from training.jsonable import json_safe

__all__ = [
    "PROGRAMS",
    "REPORT_STEPS",
    "STYLES",
    "SUMMARY_METRICS",
    "WORLDS",
    "CopyPaste",
    "PairedConfig",
    "action_program",
    "run_paired",
    "summarize_arrays",
    "write_outputs",
]

World = Literal["sprites"]
"""Worlds with a ground-truth twin."""
WORLDS: tuple[World, ...] = get_args(World)
Program = Literal["random", "line", "square"]
"""Scripted action programs (:func:`action_program`)."""
PROGRAMS: tuple[Program, ...] = get_args(Program)
PairedControl = Literal["position"]
"""Control modes the paired evaluation runs (the copy-paste baseline only translates)."""
CONTROLS: tuple[PairedControl, ...] = get_args(PairedControl)
SCENE_SET_BY_EVALUATION = ("size", "objects", "style", "shapes")
"""``SceneConfig`` fields a paired evaluation sets itself (``PairedConfig.scene`` keeps them at
their defaults)."""
REPORT_STEPS = (1, 16, 50, 100)
"""Steps reported in the summary as ``<metric>@<step>`` (those <= T)."""
SUMMARY_METRICS = (
    "hit_rate",
    "position_rmse_px",
    "position_rmse_px_apart",
    "sim_position_rmse_px",
    "shape_iou",
    "colour_error",
    "colour_error_apart",
    "size_ratio",
    "psnr",
    "ssim",
    "background_psnr",
)
"""Metrics of the summary, per system (see ``training.paired_metrics``)."""
SYSTEMS = ("model", "copy_paste")
"""Systems scored against the twin: the learned simulator and the copy-paste baseline."""
REFERENCE_SIZE = 64
"""Frame size the programs' pixel speeds are given for; other sizes scale them by size / 64."""
MAX_SPEED_PX = 2.5
"""Largest speed (px/step at 64x64) of every program: the bundled sprites models were trained
on speeds of 1-2.9 px per frame (``training.data.sprites.SpritesConfig.speed`` x 64)."""
MIN_SPEED_PX = 1.0
"""Smallest speed (px/step at 64x64) of the "random" and "line" programs."""
BORDER_MARGIN_PX = 12.0
"""Programs steer commanded positions to stay this far (px at 64x64) inside the frame."""
SQUARE_SIDE_PX = 16.0
"""Side of the "square" program's path (px at 64x64)."""
SQUARE_SPEED_PX = 2.0
"""Speed of the "square" program (px/step at 64x64)."""


@dataclass(frozen=True)
class PairedConfig:
    """What a paired evaluation runs (the checkpoint aside).

    Episodes are split evenly over ``objects`` (the first groups get one more when they do not
    divide); an episode of group K draws a scene of exactly K objects, all controlled.
    """

    world: World = "sprites"
    """One of :data:`WORLDS`."""
    program: Program = "random"
    """Action program, one of :data:`PROGRAMS`."""
    episodes: int = 64
    """Episodes in all (>= 1); every one is scored."""
    steps: int = 100
    """Steps per episode T (>= 1)."""
    seed: int = 0
    """Seed of the scenes, the programs and the environments."""
    style: Style = "classic"
    """Scene style, one of :data:`STYLES`."""
    objects: tuple[int, ...] = (1, 2)
    """Numbers of objects K; episodes are split evenly over them."""
    tracking: Tracking | None = None
    """Learned env's tracking ("segment", "carry", "anchored"); None: the env's default."""
    separate: bool | None = None
    """Learned env's ``separate`` (cut touching objects apart by colour at reset); None: the
    env's default."""
    occlusion: bool | None = None
    """Learned env's ``occlusion`` (depth order and hidden parts of touching objects, read at
    reset); None: the env's default."""
    device: str = "auto"
    """Torch device of the learned env."""
    threads: int | None = None
    """Torch CPU threads during the run (None: torch's choice)."""
    control: PairedControl = "position"
    """Control mode, one of :data:`CONTROLS`."""
    noise: bool = True
    """Whether the twin adds its sensor noise to the true frames."""
    show: int = 3
    """Episodes drawn in the contact sheet and the video (at most ``episodes``)."""
    batch: int = 64
    """Most episodes run at once in one batched learned env."""
    scene: SceneConfig = SceneConfig()
    """How the twins draw their scenes beyond the style: object sizes, texture, background
    contrast, light, shadows, sensor noise (``lcvg_env.world.scene.SceneConfig``), for scenes
    unlike either style. Its :data:`SCENE_SET_BY_EVALUATION` fields are the evaluation's own
    (``style``, ``objects``, the world's size; shapes: the style's) and must keep their
    defaults."""

    def __post_init__(self) -> None:
        """Validate every field; errors name what was received and the choices."""
        check_choices(self)
        check_ints(self, {"episodes": 1, "steps": 1, "show": 0, "batch": 1, "seed": 0})
        objects = tuple(self.objects) if isinstance(self.objects, Sequence) else None
        if (not objects or len(set(objects)) != len(objects) or any(
                isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 6
                for k in objects)):
            raise ValueError(
                f"objects must be a non-empty tuple of distinct ints in [1, 6], got "
                f"{self.objects!r}")
        object.__setattr__(self, "objects", objects)
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(
                self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be None or an int >= 1, got {self.threads!r}")
        if not isinstance(self.noise, bool):
            raise ValueError(f"noise must be a bool, got {self.noise!r}")
        check_looks_only(self.scene, SCENE_SET_BY_EVALUATION, "the paired evaluation",
                         "give --style and --objects instead")

    def episodes_per_group(self) -> list[int]:
        """Episodes of each K in ``objects`` (they add up to ``episodes``)."""
        n, g = divmod(self.episodes, len(self.objects))
        return [n + (1 if i < g else 0) for i in range(len(self.objects))]


# --------------------------------------------------------------------------------------------
# action programs
# --------------------------------------------------------------------------------------------


def action_program(
    name: str,
    rng: np.random.Generator,
    steps: int,
    num_objects: int,
    size: int,
    max_translation: float = 0.125,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """Scripted position-control actions of one episode, in the bundled models' motion range.

    Every program plans in pixels per step at 64x64 (scaled by ``size / 64``), following the
    commanded position of each object from ``start`` (its true pixel centroid at reset;
    default the frame centre) so that it can steer clear of the borders:

    - "random": a smooth random walk of velocities, ``v <- 0.85 v + N(0, 0.5)`` per axis, pushed
      back (by 0.6 px/step per step) when the commanded position comes within
      :data:`BORDER_MARGIN_PX` of a border, its speed held in [:data:`MIN_SPEED_PX`,
      :data:`MAX_SPEED_PX`] and a velocity component reflected if the next position would
      leave the margin band's inner half;
    - "line": a constant velocity (random direction, speed uniform in [1.5, 2.5] px/step) that
      bounces (the component flips) off the margin band;
    - "square": a square of side :data:`SQUARE_SIDE_PX` at :data:`SQUARE_SPEED_PX` px/step
      (8 steps a side), first along x then y, each towards the frame centre from ``start``,
      then back, repeated.

    The objects of an episode move independently. Speeds never exceed 2.5 px/step, inside the
    1-2.9 px per frame of the sprites data the bundled models were trained on.

    Args:
        name: one of :data:`PROGRAMS`.
        rng: the episode's random generator (the only source of randomness).
        steps: T >= 1.
        num_objects: K >= 1.
        size: frame side in pixels (square frames).
        max_translation: the environment's ``ActionRanges.max_translation`` (normalised units
            of an action of 1).
        start: optional float (K, 2) pixel (x, y) positions at reset.

    Returns:
        float32 (T, K, 2) normalised (dx, dy) actions in [-1, 1].

    Raises:
        ValueError: unknown program (listing :data:`PROGRAMS`), bad sizes, or a
            ``max_translation`` too small for the program's speeds.
    """
    _check_program_args(name, steps, num_objects, size, max_translation)
    k, scale = int(num_objects), size / REFERENCE_SIZE
    pos = _start_positions(start, k, size)
    if name == "square":
        velocity = _square_velocities(pos, steps, size, scale)
    else:
        velocity = _bouncing_velocities(name, rng, pos, steps, size, scale)
    actions = velocity * 2.0 / size / max_translation  # px -> normalised -> action units
    worst = float(np.abs(actions).max())
    if worst > 1.0 + 1e-6:
        raise ValueError(
            f"max_translation={max_translation} is too small for program {name!r}: it needs "
            f"actions up to {worst:.3f} (> 1) for {MAX_SPEED_PX * scale:.2f} px/step at size "
            f"{size}")
    return np.clip(actions, -1.0, 1.0).astype(np.float32)


def _check_program_args(name: str, steps: int, num_objects: int, size: int,
                        max_translation: float) -> None:
    """ValueError naming the received value for an unknown program or a bad size or range."""
    if name not in PROGRAMS:
        raise ValueError(f"program must be one of {PROGRAMS}, got {name!r}")
    for label, value, low in (("steps", steps, 1), ("num_objects", num_objects, 1),
                              ("size", size, 8)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{label} must be an int >= {low}, got {value!r}")
    if not (isinstance(max_translation, int | float) and max_translation > 0):
        raise ValueError(f"max_translation must be a number > 0, got {max_translation!r}")


def _start_positions(start: np.ndarray | None, k: int, size: int) -> np.ndarray:
    """Float64 (K, 2) pixel positions at reset (a copy of ``start``; default the centre)."""
    if start is None:
        return np.full((k, 2), (size - 1) / 2.0)
    pos = np.asarray(start, dtype=np.float64)
    if pos.shape != (k, 2) or not np.all(np.isfinite(pos)):
        raise ValueError(f"start must be finite (K={k}, 2) pixels, got {pos!r}")
    return pos.copy()


def _square_velocities(pos: np.ndarray, steps: int, size: int, scale: float) -> np.ndarray:
    """(T, K, 2) pixel velocities of the "square" program from (K, 2) start positions."""
    k = pos.shape[0]
    velocity = np.zeros((steps, k, 2))
    side = int(round(SQUARE_SIDE_PX / SQUARE_SPEED_PX))
    centre = (size - 1) / 2.0
    sx = np.where(pos[:, 0] <= centre, 1.0, -1.0)
    sy = np.where(pos[:, 1] <= centre, 1.0, -1.0)
    for t in range(steps):
        leg = (t // side) % 4
        v = np.zeros((k, 2))
        axis, sign = (0, sx) if leg in (0, 2) else (1, sy)
        v[:, axis] = sign * (1.0 if leg < 2 else -1.0)
        velocity[t] = v * SQUARE_SPEED_PX * scale
    return velocity


def _bouncing_velocities(name: str, rng: np.random.Generator, pos: np.ndarray, steps: int,
                         size: int, scale: float) -> np.ndarray:
    """(T, K, 2) pixel velocities of the "random" or "line" program from (K, 2) starts.

    Velocities bounce off the margin band; ``pos`` is not modified.
    """
    k = pos.shape[0]
    margin, low, high = BORDER_MARGIN_PX * scale, 0.0, size - 1.0
    velocity = np.zeros((steps, k, 2))
    angle = rng.uniform(0.0, 2.0 * math.pi, size=k)
    lo_speed = 1.5 if name == "line" else MIN_SPEED_PX
    speed = rng.uniform(lo_speed, MAX_SPEED_PX, size=k) * scale
    v = np.stack([np.cos(angle), np.sin(angle)], axis=1) * speed[:, None]
    for t in range(steps):
        if name == "random":
            v = _random_walk_velocity(v, rng, pos, low + margin, high - margin, scale)
            band = margin / 2.0
        else:
            band = margin
        nxt = pos + v
        flip = (nxt < low + band) & (v < 0) | (nxt > high - band) & (v > 0)
        v = np.where(flip, -v, v)
        velocity[t] = v
        pos = pos + v
    return velocity


def _random_walk_velocity(v: np.ndarray, rng: np.random.Generator, pos: np.ndarray,
                          low: float, high: float, scale: float) -> np.ndarray:
    """Next (K, 2) velocity of the "random" program from the current one.

    A smoothed random kick, a push back where positions are outside [low, high], and the
    speed clipped to the programs' range.
    """
    v = 0.85 * v + rng.normal(0.0, 0.5 * scale, size=v.shape)
    v += 0.6 * scale * ((pos < low).astype(float) - (pos > high).astype(float))
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    limit = np.clip(norm, MIN_SPEED_PX * scale, MAX_SPEED_PX * scale)
    direction = np.where(norm > 1e-9, v / np.maximum(norm, 1e-9), [[1.0, 0.0]])
    return direction * limit


# --------------------------------------------------------------------------------------------
# copy-paste baseline
# --------------------------------------------------------------------------------------------


class CopyPaste:
    """Copy-paste baseline: the first frame's objects moved by the commanded translations.

    No generator: each controlled object's first-frame pixels (under its true visible mask at
    reset) are shifted by its accumulated commanded translation, rounded to the nearest whole
    pixel, and pasted over the unchanged first frame (the object's old pixels stay where they
    were: nothing is inpainted). Objects are pasted from the last to the first, so object 0
    ends on top. Parts moved out of the frame are cut off.

    Args:
        first_frame: uint8 (H, W, 3) the frame at reset.
        masks: bool (K, H, W) true visible masks of the controlled objects at reset.
        max_translation: normalised units of an action of 1 (``ActionRanges``).

    Attributes:
        frame: uint8 (H, W, 3) the current frame.
        objects: bool (K, H, W) the moved masks (the baseline's own per-object masks).
        centroids_px: float (K, 2) pixel (x, y) centroids of ``objects`` (the first-frame
            centroid plus the whole-pixel offset while an object is fully out of view).
        centroids: float (K, 2) the same in normalised coordinates.
    """

    def __init__(self, first_frame: np.ndarray, masks: np.ndarray,
                 max_translation: float = 0.125) -> None:
        if (not isinstance(first_frame, np.ndarray) or first_frame.dtype != np.uint8
                or first_frame.ndim != 3 or first_frame.shape[-1] != 3):
            raise ValueError(
                f"first_frame must be uint8 (H, W, 3), got {pm._describe(first_frame)}")
        h, w = first_frame.shape[:2]
        masks = np.asarray(masks)
        if masks.ndim != 3 or masks.shape[1:] != (h, w):
            raise ValueError(f"masks must be (K, {h}, {w}), got shape {masks.shape}")
        self.first = first_frame.copy()
        self.masks = masks.astype(bool)
        self.size = (h, w)
        self.max_translation = float(max_translation)
        self.offset = np.zeros((masks.shape[0], 2))  # accumulated (dx, dy) pixels
        self.start_centroids, _ = pm.mask_centroids(self.masks)
        self._render()

    @property
    def num_objects(self) -> int:
        """K, the number of controlled objects."""
        return int(self.masks.shape[0])

    def step(self, actions: np.ndarray) -> np.ndarray:
        """Apply (K, 2) normalised (dx, dy) actions in [-1, 1]; returns the new frame."""
        a = np.asarray(actions, dtype=np.float64)
        if a.shape != (self.num_objects, 2) or not np.all(np.isfinite(a)):
            raise ValueError(
                f"actions must be finite ({self.num_objects}, 2), got {pm._describe(a)}")
        h, w = self.size
        self.offset += np.clip(a, -1.0, 1.0) * self.max_translation * np.array([w, h]) / 2.0
        self._render()
        return self.frame

    def _render(self) -> None:
        h, w = self.size
        shift = np.floor(self.offset + 0.5).astype(int)  # nearest whole pixel
        frame = self.first.copy()
        objects = np.zeros_like(self.masks)
        for k in reversed(range(self.num_objects)):
            dx, dy = shift[k]
            ys, xs = np.nonzero(self.masks[k])
            ty, tx = ys + dy, xs + dx
            keep = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
            frame[ty[keep], tx[keep]] = self.first[ys[keep], xs[keep]]
            objects[k, ty[keep], tx[keep]] = True
        centroids, area = pm.mask_centroids(objects)
        fallback = self.start_centroids + shift
        self.frame = frame
        self.objects = objects
        self.centroids_px = np.where((area > 0)[:, None], centroids, fallback)
        self.centroids = (2.0 * self.centroids_px + 1.0) / np.array([w, h]) - 1.0


# --------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------


def _pooled(arrays: dict[str, np.ndarray], select: Any) -> dict[str, float]:
    """Summary metrics of the entries ``select`` picks on the time axis of (E, T[, K])."""
    def take(key: str) -> np.ndarray:
        return arrays[key][:, select]

    visible = take("visible") > 0
    out: dict[str, float] = {}
    with np.errstate(invalid="ignore"):
        for key, source in (("hit_rate", "hit"), ("shape_iou", "shape_iou"),
                            ("colour_error", "colour_error"), ("size_ratio", "size_ratio")):
            values = take(source)[visible]
            out[key] = float(values.mean()) if values.size else math.nan
        apart = (take("apart") == 1) & visible
        colour = take("colour_error")[apart]
        out["colour_error_apart"] = float(colour.mean()) if colour.size else math.nan
        hit = (take("hit") == 1) & visible
        err = take("position_error_px")
        for key, chosen in (("position_rmse_px", hit), ("position_rmse_px_apart", hit & apart)):
            out[key] = float(np.sqrt(np.mean(err[chosen] ** 2))) if chosen.any() else math.nan
        sim = take("sim_position_error_px")[visible]
        sim = sim[np.isfinite(sim)]
        out["sim_position_rmse_px"] = float(np.sqrt(np.mean(sim**2))) if sim.size else math.nan
        for key in pm.FRAME_METRICS:
            values = take(key)
            values = values[np.isfinite(values)]
            out[key] = float(values.mean()) if values.size else math.nan
    return out


def summarize_arrays(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, float]:
    """Flat ``<prefix>/<metric>@<step>`` and ``@mean`` entries of one system's arrays.

    Args:
        arrays: per-object float (E, T, K) arrays (``training.paired_metrics.OBJECT_METRICS``,
            NaN where not visible or padded) and per-frame (E, T) arrays
            (``FRAME_METRICS``); index t holds step t + 1.
        prefix: "model" or "copy_paste".
    """
    steps = arrays["psnr"].shape[1]
    out: dict[str, float] = {}
    for step in REPORT_STEPS:
        if step <= steps:
            for key, value in _pooled(arrays, step - 1).items():
                out[f"{prefix}/{key}@{step}"] = value
    for key, value in _pooled(arrays, slice(None)).items():
        out[f"{prefix}/{key}@mean"] = value
    return dict(sorted(out.items()))


def per_step_series(arrays: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Every summary metric at every step 1..T of one system's arrays -> lists of T floats."""
    steps = arrays["psnr"].shape[1]
    rows = [_pooled(arrays, t) for t in range(steps)]
    return {key: [row[key] for row in rows] for key in SUMMARY_METRICS}


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------


def _check_checkpoint(checkpoint: Any, device: str, size: int) -> tuple[int, int]:
    """Resolution of the checkpoint; ValueError naming both sizes when it is not the world's."""
    from lcvg_env.env import load_model

    model = load_model(checkpoint, device)
    resolution = (int(model.config.resolution[0]), int(model.config.resolution[1]))
    if resolution != (size, size):
        raise ValueError(
            f"checkpoint {str(checkpoint)!r} makes frames of {resolution[0]}x{resolution[1]}, "
            f"the sprites world's frames are {size}x{size}; give a checkpoint trained at "
            f"{size}x{size}")
    return resolution


class _Recorder:
    """Per-step, per-object arrays of one system, (E, T, Kmax) and (E, T)."""

    def __init__(self, episodes: int, steps: int, kmax: int) -> None:
        self.arrays = {key: np.full((episodes, steps, kmax), np.nan)
                       for key in pm.OBJECT_METRICS}
        self.arrays["visible"][:] = 0.0
        for key in pm.FRAME_METRICS:
            self.arrays[key] = np.full((episodes, steps), np.nan)

    def put(self, rows: np.ndarray, t: int, scores: dict[str, np.ndarray]) -> None:
        for key in pm.OBJECT_METRICS:
            k = scores[key].shape[1]
            self.arrays[key][rows, t, :k] = scores[key]
        for key in pm.FRAME_METRICS:
            self.arrays[key][rows, t] = scores[key]


def run_paired(
    config: PairedConfig,
    checkpoint: Any,
    out: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every episode in the twin, the learned env and the copy-paste baseline; score them.

    Args:
        config: what to run (validated).
        checkpoint: a checkpoint path or name (as ``gym.make``'s ``checkpoint=``) whose frames
            are the world's size.
        out: optional folder for :func:`write_outputs` (eval.json, contact sheet, video, plot).
        progress: optional callable given one line per batch of episodes.

    Returns:
        ``summary``: the flat JSON-able dict (see the module docstring; plus ``world``,
        ``episodes``, ``steps``, ``style``, ``program``, ``tracking``, ``checkpoint``,
        ``seed``, ``seconds``, ``frames_per_second``, ...); ``per_step``: per system, every
        summary metric at steps 1..T; ``arrays``: per system, the per-object float (E, T, Kmax)
        and per-frame (E, T) arrays (index t = step t + 1; NaN where an object is not visible
        or the episode has fewer objects); ``objects``: int (E,) K of each episode;
        ``lost_at_reset``: bool (E, Kmax), objects the learned env did not find in the first
        frame (two touching objects are one mask component there; the summary counts them as
        ``model/objects_lost_at_reset``; they are scored like the others); ``shown``:
        uint8 frames (true, model, copy-paste) of the first ``config.show`` episodes, each
        (T + 1, H, W, 3) from the reset frame on; ``files``: what was written.

    Raises:
        ValueError: a checkpoint whose frame size is not the world's (naming both sizes).
    """
    import torch

    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        result = _run(config, checkpoint, progress)
    finally:
        torch.set_num_threads(previous_threads)
    seconds = time.perf_counter() - started
    frames = config.episodes * config.steps
    summary = result["summary"]
    summary["seconds"] = round(seconds, 3)
    summary["frames_per_second"] = round(frames / seconds, 2) if seconds > 0 else math.nan
    if out is not None:
        result["files"] = write_outputs(result, out)
    return result


def _run(config: PairedConfig, checkpoint: Any,
         progress: Callable[[str], None] | None) -> dict[str, Any]:
    import lcvg_env  # noqa: F401 - registers the environment ids

    _check_checkpoint(checkpoint, config.device, SceneConfig().size)
    outcome = _Outcome(config.episodes, config.steps, max(config.objects))
    episode = 0
    for k, count in zip(config.objects, config.episodes_per_group()):
        for first in range(0, count, config.batch):
            rows = np.arange(episode, episode + min(config.batch, count - first))
            outcome.objects[rows] = k
            _run_batch(config, checkpoint, k, rows, outcome)
            episode += len(rows)
            if progress is not None:
                progress(f"paired: {episode}/{config.episodes} episodes ({k} object(s))")
    if episode != config.episodes:  # pragma: no cover - the groups add up by construction
        raise RuntimeError(f"ran {episode} episodes, {config.episodes} asked")
    return _paired_result(config, checkpoint, outcome)


class _Outcome:
    """What the batches of a paired run fill in, episode rows 0..E-1 in run order.

    Attributes:
        recorders: per system, its :class:`_Recorder`.
        objects: int (E,) K of each episode.
        lost_at_reset: bool (E, Kmax), objects the learned env did not find at reset.
        shown: per row name ("true", then :data:`SYSTEMS`), one list of frames per shown
            episode, from the reset frame on.
        model_seconds: time spent in the learned env's reset and step calls.
    """

    def __init__(self, episodes: int, steps: int, kmax: int) -> None:
        self.recorders = {name: _Recorder(episodes, steps, kmax) for name in SYSTEMS}
        self.objects = np.zeros(episodes, dtype=np.int64)
        self.lost_at_reset = np.zeros((episodes, kmax), dtype=bool)
        self.shown: dict[str, list[list[np.ndarray]]] = {name: [] for name in ("true", *SYSTEMS)}
        self.model_seconds = 0.0


class _Clips:
    """Frames of the episodes of one batch whose row is below ``show`` (the shown ones)."""

    def __init__(self, rows: np.ndarray, show: int) -> None:
        self.keep = [i for i in range(len(rows)) if int(rows[i]) < show]
        self.frames: dict[str, list[list[np.ndarray]]] = {
            name: [[] for _ in self.keep] for name in ("true", *SYSTEMS)}

    def add(self, true: np.ndarray, model: Any, copy_paste: np.ndarray) -> None:
        """Append one step of the batch's (n, H, W, 3) frames of each system."""
        for j, i in enumerate(self.keep):
            self.frames["true"][j].append(true[i])
            self.frames["model"][j].append(np.asarray(model[i]))
            self.frames["copy_paste"][j].append(copy_paste[i])


def _run_batch(config: PairedConfig, checkpoint: Any, k: int, rows: np.ndarray,
               outcome: _Outcome) -> None:
    """Run the episodes ``rows`` (K objects each) and record them in ``outcome``.

    Their twins, one batched learned env and the copy-paste baseline run the same actions;
    every step is scored and the shown episodes' frames are kept.
    """
    from lcvg_env.spaces import ActionRanges

    size, max_translation = SceneConfig().size, ActionRanges().max_translation
    twins = _reset_twins(config, k, rows, size)
    first_frames = np.stack([twin.frame for twin in twins])
    backgrounds = np.stack([twin.background() for twin in twins])  # static scenes
    t0 = time.perf_counter()
    learned, obs, info = _reset_learned(config, checkpoint, k, rows, first_frames)
    outcome.model_seconds += time.perf_counter() - t0
    # pairing (lcvg_env.world.pairing.paired_reset, batched): the twin re-chooses and
    # re-orders its controlled objects so that its object k is the learned env's k
    present = np.asarray(info["present"], bool)  # (n, K)
    for i, twin in enumerate(twins):
        twin.match_objects(np.asarray(info["centroids"][i]), present=present[i])
    outcome.lost_at_reset[rows, :k] = ~present
    starts = np.stack([np.asarray(twin.observe()[1]["centroids_px"], np.float64)
                       for twin in twins])  # (n, K, 2) true pixel centroids
    copies = [CopyPaste(twin.frame, twin.true_masks(), max_translation) for twin in twins]
    programs = np.stack([
        action_program(config.program, np.random.default_rng([config.seed, int(r), 1]),
                       config.steps, k, size, max_translation, start=starts[i])
        for i, r in enumerate(rows)])  # (n, T, K, 2)
    clips = _Clips(rows, config.show)
    clips.add(first_frames, obs, np.stack([copy.frame for copy in copies]))
    for t in range(config.steps):
        acts = programs[:, t]  # (n, K, 2)
        for i, twin in enumerate(twins):
            twin.step(acts[i].reshape(-1))
        t0 = time.perf_counter()
        obs, _, _, _, info = learned.step(acts.reshape(len(rows), -1))
        outcome.model_seconds += time.perf_counter() - t0
        for i, copy in enumerate(copies):
            copy.step(acts[i])
        true_frames = np.stack([twin.frame for twin in twins])
        cp_frames = np.stack([copy.frame for copy in copies])
        _score_step(outcome.recorders, rows, t, twins, backgrounds, true_frames,
                    (np.asarray(obs, np.uint8), np.asarray(info["centroids_px"], np.float64)),
                    (cp_frames, np.stack([copy.centroids_px for copy in copies])))
        clips.add(true_frames, obs, cp_frames)
    learned.close()
    for twin in twins:
        twin.close()
    for name, frames in clips.frames.items():
        outcome.shown[name].extend(frames)


def _reset_twins(config: PairedConfig, k: int, rows: np.ndarray,
                 size: int) -> list[SpritesRealEnv]:
    """One twin per episode row, each reset to its scene of exactly K objects."""
    scene_config = with_looks(config.scene, size=size, objects=(k, k), style=config.style)
    twins = [SpritesRealEnv(
        control=config.control, num_objects=k, task="free", style=config.style,
        size=size, noise=config.noise, scene_config=scene_config) for _ in rows]
    for twin, r in zip(twins, rows):
        twin.reset(seed=_episode_seed(config.seed, int(r)))
    return twins


def _reset_learned(config: PairedConfig, checkpoint: Any, k: int, rows: np.ndarray,
                   first_frames: np.ndarray) -> tuple[Any, Any, dict[str, Any]]:
    """Make the batched learned env of the episode rows; reset it from (n, H, W, 3) frames.

    Returns:
        The env, its observations and its reset info.
    """
    import gymnasium as gym

    env_kwargs: dict[str, Any] = {"control": config.control, "device": config.device}
    if config.tracking is not None:
        env_kwargs["tracking"] = config.tracking
    for key in ("separate", "occlusion"):
        if getattr(config, key) is not None:
            env_kwargs[key] = getattr(config, key)
    learned = gym.make_vec(
        "LCVG-Sprites-v0", num_envs=len(rows), vectorization_mode="vector_entry_point",
        checkpoint=checkpoint, num_objects=k, autoreset_mode="Disabled",
        max_episode_steps=None, **env_kwargs)
    obs, info = learned.reset(seed=[_episode_seed(config.seed, int(r)) for r in rows],
                              options={"frame": first_frames})
    return learned, obs, info


def _score_step(recorders: dict[str, _Recorder], rows: np.ndarray, t: int,
                twins: Sequence[SpritesRealEnv], backgrounds: np.ndarray,
                true_frames: np.ndarray, model: tuple[np.ndarray, np.ndarray],
                copy_paste: tuple[np.ndarray, np.ndarray]) -> None:
    """Score step ``t`` of each system against the twins' (n, H, W, 3) ``true_frames``.

    ``model`` and ``copy_paste`` are each uint8 (n, H, W, 3) frames and float (n, K, 2) pixel
    centroids of the system's own objects.
    """
    true_masks = np.stack([twin.true_masks() for twin in twins])
    others = _other_masks(twins)
    colours = pm.object_colours(true_frames, true_masks, others, backgrounds)
    for name, (frames, centroids_px) in (("model", model), ("copy_paste", copy_paste)):
        recorders[name].put(rows, t, pm.score_frames(
            frames, true_frames, true_masks, others, backgrounds, centroids_px,
            references=colours))


def _paired_result(config: PairedConfig, checkpoint: Any, outcome: _Outcome) -> dict[str, Any]:
    """:func:`run_paired`'s result (without timings or files) of a run's ``outcome``."""
    arrays = {name: rec.arrays for name, rec in outcome.recorders.items()}
    summary: dict[str, Any] = {
        "world": config.world,
        "checkpoint": str(checkpoint),
        "episodes": config.episodes,
        "steps": config.steps,
        "style": config.style,
        "program": config.program,
        "control": config.control,
        "tracking": config.tracking or "default",
        "seed": config.seed,
        "objects": list(config.objects),
        "episodes_per_objects": config.episodes_per_group(),
        "noise": config.noise,
        "objects_scored": int(arrays["model"]["visible"].sum()),
        "objects_unscored": int(sum(int(k) * config.steps for k in outcome.objects)
                                - arrays["model"]["visible"].sum()),
        "model_seconds": round(outcome.model_seconds, 3),
        "model/objects_lost_at_reset": int(outcome.lost_at_reset.sum()),
    }
    for name in SYSTEMS:
        summary.update(summarize_arrays(arrays[name], name))
    return {
        "summary": summary,
        "per_step": {name: per_step_series(arrays[name]) for name in SYSTEMS},
        "arrays": arrays,
        "objects": outcome.objects,
        "lost_at_reset": outcome.lost_at_reset,
        "shown": {name: [np.stack(frames) for frames in outcome.shown[name]]
                  for name in outcome.shown},
        "config": asdict(config),
        "files": {},
    }


def _episode_seed(seed: int, episode: int) -> int:
    """Seed of episode ``episode`` (twin scene and learned env), a function of both."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


def _other_masks(twins: Sequence[Any]) -> np.ndarray:
    """(n, M, H, W) visible masks of the scene objects that are not controlled (M may be 0)."""
    rows = [twin.other_masks() for twin in twins]
    m = max(r.shape[0] for r in rows)
    n, (h, w) = len(rows), rows[0].shape[1:]
    out = np.zeros((n, m, h, w), dtype=bool)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------


def write_outputs(result: dict[str, Any], out: str | Path) -> dict[str, str]:
    """Write eval.json, contact_sheet.png, side_by_side.gif and errors.png into ``out``.

    Returns:
        {name: path} of the files written.
    """
    import json

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    path = folder / "eval.json"
    payload = {"summary": result["summary"], "per_step": result["per_step"],
               "config": result["config"],
               "objects_per_episode": result["objects"].tolist()}
    path.write_text(json.dumps(json_safe(payload), indent=2) + "\n")
    files["eval.json"] = str(path)
    shown = result["shown"]
    if shown["true"]:
        files["contact_sheet.png"] = str(contact_sheet(shown, folder / "contact_sheet.png"))
        files["side_by_side.gif"] = str(side_by_side(shown, folder / "side_by_side.gif"))
    files["errors.png"] = str(plot_errors(result["per_step"], folder / "errors.png"))
    return files


_ROW_NAMES = {"true": "true", "model": "model", "copy_paste": "copy-paste"}


def contact_sheet(shown: dict[str, list[np.ndarray]], path: Path, scale: int = 3) -> Path:
    """Per shown episode, the true row over the model row over the copy-paste row.

    Columns are steps 0, 1, 16, 50, 100 and T (those <= T); frames upscaled ``scale`` times.
    """
    from PIL import Image, ImageDraw

    from lcvg_env.render import upscale

    steps_total = shown["true"][0].shape[0] - 1
    columns = sorted({s for s in (0, *REPORT_STEPS, steps_total) if s <= steps_total})
    h, w = shown["true"][0].shape[1:3]
    th, tw, gap, label = h * scale, w * scale, 4, 70
    episodes = len(shown["true"])
    height = 18 + episodes * (3 * (th + gap) + 2 * gap)
    width = label + len(columns) * (tw + gap)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for c, step in enumerate(columns):
        draw.text((label + c * (tw + gap) + 2, 3), f"step {step}", fill="black")
    y = 18
    for e in range(episodes):
        for name in ("true", "model", "copy_paste"):
            draw.text((4, y + th // 2 - 6), _ROW_NAMES[name], fill="black")
            for c, step in enumerate(columns):
                tile = upscale(shown[name][e][step], scale)
                sheet.paste(Image.fromarray(tile), (label + c * (tw + gap), y))
            y += th + gap
        y += 2 * gap
    sheet.save(path)
    return path


def side_by_side(shown: dict[str, list[np.ndarray]], path: Path, scale: int = 2,
                 fps: float = 10.0) -> Path:
    """Video of true | model | copy-paste, one row per shown episode (``save_video``)."""
    from lcvg_env.render import save_video, upscale

    frames = []
    for t in range(shown["true"][0].shape[0]):
        rows = []
        for e in range(len(shown["true"])):
            parts = [shown[name][e][t] for name in ("true", "model", "copy_paste")]
            sep = np.full((parts[0].shape[0], 2, 3), 255, np.uint8)
            rows.append(np.concatenate([parts[0], sep, parts[1], sep, parts[2]], axis=1))
        frames.append(upscale(np.concatenate(rows, axis=0), scale))
    return Path(save_video(path, frames, fps=fps))


_PLOTTED = ("position_rmse_px", "shape_iou", "colour_error", "hit_rate")


def plot_errors(per_step: dict[str, dict[str, list[float]]], path: Path) -> Path:
    """Metric-vs-step panels (model and copy-paste) as a PNG.

    matplotlib draws it when importable; otherwise ``training.evaluate._pil_plot`` draws each
    panel with PIL.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _pil_panels(per_step, path)
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), dpi=110)
    for ax, key in zip(axes.ravel(), _PLOTTED):
        for name in SYSTEMS:
            ys = per_step[name][key]
            ax.plot(range(1, len(ys) + 1), ys, marker="o", ms=2, label=_ROW_NAMES[name])
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _pil_panels(per_step: dict[str, dict[str, list[float]]], path: Path) -> Path:
    from PIL import Image, ImageDraw

    from training.evaluate import _pil_plot

    panels = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in _PLOTTED:
            series = {_ROW_NAMES[name]: [None if not math.isfinite(v) else v
                                         for v in per_step[name][key]] for name in SYSTEMS}
            panel_path = Path(tmp) / f"{key}.png"
            _pil_plot(series, panel_path)  # type: ignore[arg-type]
            with Image.open(panel_path) as panel:
                titled = Image.new("RGB", (panel.width, panel.height + 18), "white")
                titled.paste(panel.convert("RGB"), (0, 18))
            ImageDraw.Draw(titled).text((50, 3), key, fill="black")
            panels.append(titled)
    pw, ph = panels[0].size
    sheet = Image.new("RGB", (2 * pw, 2 * ph), "white")
    for i, panel in enumerate(panels):
        sheet.paste(panel, ((i % 2) * pw, (i // 2) * ph))
    sheet.save(path)
    return path
