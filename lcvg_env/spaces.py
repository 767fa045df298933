"""Action and observation spaces of the lcvg environments, and the action normalisation.

Actions
-------
Agents act in ``Box(-1, 1, (K * P,), float32)``: one row of P normalised numbers per controlled
object (K objects, row k for object k, objects ordered by the area of their mask in the first
frame and then tracked). ``action_to_params`` maps a row to the forward-motion parameters of
``lcvg_env.control`` (``PARAM_NAMES``) by multiplying each entry by its range in
``ActionRanges``:

============  ====  ===================================  ===========================================
control       P     entries (in order)                   physical value of an entry ``a`` in [-1, 1]
============  ====  ===================================  ===========================================
"position"    2     dx, dy                               ``a * max_translation`` normalised units
"affine"      6     dx, dy, rotation, log_scale_x,       ``a * max_translation``, same,
                    log_scale_y, shear                   ``a * max_rotation`` radians,
                                                         ``a * max_log_scale``, same,
                                                         ``a * max_shear``
"mask"        -     ``MultiBinary((H, W))``: the next    the mask itself (1 = foreground)
                    foreground mask, drawn by the agent
============  ====  ===================================  ===========================================

Units: normalised image coordinates in [-1, 1] (x right, y down, ``align_corners=False``), so
one unit is half the frame width (for dx) or height (for dy): with the default
``max_translation = 0.125`` an action of 1 moves an object by 1/16 of the frame (4 pixels at
64x64, 16 pixels at 256x256) per step. Rotation and scale act about the object's mask centroid;
positive rotation turns the object clockwise on screen (y points down).

Observations
------------
``"frame"`` is ``Box(0, 255, (H, W, 3), uint8)``. With more observation keys the space is a
``Dict`` of (in this order, those asked for):

- ``"frame"``: the generated frame, uint8 (H, W, 3);
- ``"mask"``: the binarised foreground mask of the frame, uint8 (H, W, 1), 0 or 255;
- ``"centroids"``: the controlled objects' mask centroids, float32 (2K,) = (x0, y0, x1, y1, ...)
  in normalised coordinates (last known position while an object's mask is empty);
- ``"target"``: the reach task's targets, float32 (2K,), same layout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch
from gymnasium import spaces

Control = Literal["position", "affine", "mask"]
"""Control modes: translate each object, transform it affinely, or give the whole mask."""
CONTROLS: tuple[Control, ...] = get_args(Control)
"""The choices of ``Control``."""
PARAMS_PER_OBJECT = {"position": 2, "affine": 6}
"""Entries P of an action row per parametric control mode."""
OBSERVATION_KEYS = ("frame", "mask", "centroids", "target")
"""Observation entries an environment can expose, in the order a Dict observation holds them."""


@dataclass(frozen=True)
class ActionRanges:
    """Physical value of a normalised action entry of 1 (see the module docstring)."""

    max_translation: float = 0.125
    """Largest |dx|, |dy| per step in normalised units (1 = half the frame's width/height)."""
    max_rotation: float = math.pi / 12
    """Largest |rotation| per step in radians (15 degrees)."""
    max_log_scale: float = math.log(1.25)
    """Largest |log scale| per axis and step (a factor between 0.8 and 1.25)."""
    max_shear: float = 0.2
    """Largest |shear| per step (x += shear * y in the object's frame)."""

    def __post_init__(self) -> None:
        """Validate: every range is a finite number > 0."""
        for name in ("max_translation", "max_rotation", "max_log_scale", "max_shear"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"ActionRanges.{name} must be a float, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"ActionRanges.{name} must be finite and > 0, got {value!r}")
            object.__setattr__(self, name, float(value))

    def scale(self, control: str) -> tuple[float, ...]:
        """Per-entry multipliers of one action row for ``control`` ("position" or "affine")."""
        t = self.max_translation
        if control == "position":
            return (t, t)
        if control == "affine":
            s = self.max_log_scale
            return (t, t, self.max_rotation, s, s, self.max_shear)
        raise ValueError(f"control {control!r} has no action ranges; use 'position' or 'affine'")


def check_action_ranges(action_ranges: ActionRanges | Mapping[str, float] | None
                        ) -> ActionRanges:
    """Return ``action_ranges`` as an ``ActionRanges`` (a dict of its fields, or None = default).

    Raises:
        TypeError: anything else, naming its type.
    """
    if action_ranges is None:
        return ActionRanges()
    if isinstance(action_ranges, Mapping):
        return ActionRanges(**action_ranges)
    if not isinstance(action_ranges, ActionRanges):
        raise TypeError(f"action_ranges must be an ActionRanges, a dict or None, got "
                        f"{type(action_ranges).__name__}")
    return action_ranges


def check_max_episode_steps(max_episode_steps: int | None) -> int | None:
    """Return ``max_episode_steps`` if it is None or an int >= 1, else raise ValueError."""
    if max_episode_steps is not None and (
        isinstance(max_episode_steps, bool)
        or not isinstance(max_episode_steps, int)
        or max_episode_steps < 1
    ):
        raise ValueError(
            f"max_episode_steps must be an int >= 1 or None, got {max_episode_steps!r}"
        )
    return max_episode_steps


def check_positive_int(value: object, name: str) -> int:
    """Return ``value`` as a Python int if it is an integer >= 1 (numpy integers included).

    Nothing is coerced: 2.5, "2" and True are refused, not rounded, parsed or counted as 1.

    Raises:
        TypeError: ``value`` is not an integer (bool, float, str, ...), naming what came.
        ValueError: an integer < 1.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(
            f"{name} must be an int >= 1, got {value!r} ({type(value).__name__})"
        )
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def check_reset_options(
    options: object, accepted: Sequence[str], owner: str
) -> dict[str, Any]:
    """Return a copy of ``reset(options=...)`` as a dict (empty for None), keys checked.

    Args:
        options: what ``reset`` was given: None or a mapping of option name -> value.
        accepted: the option names ``owner`` understands.
        owner: who is being reset, for the messages (e.g. "LCVGEnv").

    Raises:
        TypeError: ``options`` is neither None nor a mapping, naming its type.
        ValueError: unknown keys, naming them and the accepted ones.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(
            f"{owner}.reset options must be a dict or None, got {type(options).__name__}: "
            f"{options!r:.80}"
        )
    unknown = sorted(repr(key) for key in options if key not in accepted)
    if unknown:
        raise ValueError(
            f"unknown reset option(s) [{', '.join(unknown)}]; {owner} accepts {tuple(accepted)}"
        )
    return dict(options)


def check_open(closed: bool, owner: str, method: str) -> None:
    """Raise RuntimeError if ``owner`` was closed: ``method`` must not run after ``close()``."""
    if closed:
        raise RuntimeError(
            f"{owner}.{method}() called after close(); make a new environment instead"
        )


def check_task_observations(keys: tuple[str, ...], task: Any) -> tuple[str, ...]:
    """Return ``keys`` if ``task`` provides every task entry among them ("target").

    ``task`` is a ``lcvg_env.tasks.Task`` (its ``name`` and ``observation_keys`` are read).

    Raises:
        ValueError: naming the keys the task cannot provide.
    """
    missing = [key for key in keys if key == "target" and "target" not in task.observation_keys]
    if missing:
        raise ValueError(
            f"observation key(s) {missing} need a task that provides them (task "
            f"{task.name!r} provides {task.observation_keys})"
        )
    return keys


def check_control(control: str) -> str:
    """Return ``control`` if it is one of ``CONTROLS``, else raise ValueError naming it."""
    if control not in CONTROLS:
        raise ValueError(f"control must be one of {CONTROLS}, got {control!r}")
    return control


def action_space(control: str, num_objects: int, resolution: tuple[int, int]) -> spaces.Space:
    """Return the single-environment action space.

    ``Box(-1, 1, (K * P,), float32)`` for "position" (P = 2) and "affine" (P = 6);
    ``MultiBinary((H, W))`` for "mask".
    """
    check_control(control)
    if control == "mask":
        return spaces.MultiBinary([int(resolution[0]), int(resolution[1])])
    size = num_objects * PARAMS_PER_OBJECT[control]
    return spaces.Box(-1.0, 1.0, (size,), np.float32)


def observation_space(
    keys: Sequence[str], num_objects: int, resolution: tuple[int, int]
) -> spaces.Space:
    """Return the single-environment observation space for ``keys``.

    Just ``("frame",)`` gives the image Box itself; anything else a ``Dict`` in
    ``OBSERVATION_KEYS`` order.
    """
    keys = check_observation_keys(keys)
    h, w = int(resolution[0]), int(resolution[1])
    boxes: dict[str, spaces.Space] = {
        "frame": spaces.Box(0, 255, (h, w, 3), np.uint8),
        "mask": spaces.Box(0, 255, (h, w, 1), np.uint8),
        "centroids": spaces.Box(-1.0, 1.0, (2 * num_objects,), np.float32),
        "target": spaces.Box(-1.0, 1.0, (2 * num_objects,), np.float32),
    }
    if tuple(keys) == ("frame",):
        return boxes["frame"]
    return spaces.Dict({key: boxes[key] for key in OBSERVATION_KEYS if key in keys})


def check_observation_keys(keys: Sequence[str]) -> tuple[str, ...]:
    """Validate observation keys and return them in canonical order.

    They must be a non-empty sequence of distinct names from ``OBSERVATION_KEYS`` that
    includes "frame".
    """
    if isinstance(keys, str) or not isinstance(keys, Sequence):
        raise TypeError(f"observation keys must be a sequence of names, got {keys!r}")
    unknown = [key for key in keys if key not in OBSERVATION_KEYS]
    if unknown or "frame" not in keys or len(set(keys)) != len(keys):
        raise ValueError(
            f"observation keys must be distinct names from {OBSERVATION_KEYS} including "
            f"'frame', got {tuple(keys)!r}"
        )
    return tuple(key for key in OBSERVATION_KEYS if key in keys)


def validate_actions(
    actions: object, control: str, num_objects: int, resolution: tuple[int, int], batch: int
) -> np.ndarray:
    """Check a batch of actions and return it as a numpy array.

    Args:
        actions: (N, K*P) numbers in [-1, 1] for parametric control (values outside are
            clipped; NaN or infinite values are refused), or (N, H, W) masks for "mask"
            (values 0/1 or bool).
        control: the environment's control mode.
        num_objects: K.
        resolution: (H, W).
        batch: N.

    Returns:
        float32 (N, K*P) clipped to [-1, 1], or float32 (N, H, W) in {0, 1}.

    Raises:
        ValueError: wrong shape, NaN/inf, or mask values other than 0/1, quoting what came.
        TypeError: not array-like, not numeric, or complex.
    """
    try:
        array = np.asarray(actions)
    except Exception as error:  # noqa: BLE001 - anything numpy cannot read is a type error
        message = f"actions must be array-like, got {type(actions).__name__}: {error}"
        raise TypeError(message) from None
    if array.dtype.kind == "c":
        raise TypeError(
            f"actions must be real numbers, got complex dtype {array.dtype} ({_preview(array)})"
        )
    # bool, signed/unsigned integer and float only: not object, str, datetime or timedelta
    if array.dtype.kind not in "biuf":
        raise TypeError(f"actions must be numeric, got dtype {array.dtype} ({_preview(array)})")
    if control == "mask":
        expected: tuple[int, ...] = (batch, int(resolution[0]), int(resolution[1]))
    else:
        expected = (batch, num_objects * PARAMS_PER_OBJECT[control])
    if array.shape != expected:
        if batch == 1 and array.shape == expected[1:]:
            array = array[None]
        else:
            shown = expected[1:] if batch == 1 else expected
            raise ValueError(
                f"actions for control={control!r} must have shape {shown}, got shape "
                f"{array.shape}: {_preview(array)}"
            )
    given = array
    with np.errstate(over="ignore"):  # refused just below, with the values given
        array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):  # one pass: NaN/inf given, or too large for float32
        if not np.all(np.isfinite(given)):
            raise ValueError(f"actions must be finite, got {_preview(given)}")
        raise ValueError(f"actions must fit in float32 (|a| < 3.4e38), got {_preview(given)}")
    if control == "mask":
        if not np.all((array == 0) | (array == 1)):
            raise ValueError(f"mask actions must hold only 0 and 1, got {_preview(array)}")
        return array.copy()
    return np.clip(array, -1.0, 1.0)


def action_to_params(
    actions: torch.Tensor, control: str, num_objects: int, ranges: ActionRanges
) -> torch.Tensor:
    """Normalised actions (N, K*P) in [-1, 1] -> physical parameters (N, K, P).

    The parameters follow ``lcvg_env.control.PARAM_NAMES`` (forward motion, normalised units,
    radians, log scales) for "affine" and are (dx, dy) for "position".
    """
    scale = torch.tensor(ranges.scale(control), dtype=actions.dtype, device=actions.device)
    p = PARAMS_PER_OBJECT[control]
    if actions.ndim != 2 or actions.shape[1] != num_objects * p:
        raise ValueError(
            f"actions must be (N, {num_objects * p}) for {num_objects} objects and control "
            f"{control!r}, got shape {tuple(actions.shape)}"
        )
    return actions.reshape(actions.shape[0], num_objects, p) * scale  # (N, K, P)


def params_to_action(
    params: torch.Tensor, control: str, ranges: ActionRanges
) -> torch.Tensor:
    """Physical parameters (N, K, P) -> normalised actions (N, K*P), clipped to [-1, 1]."""
    scale = torch.tensor(ranges.scale(control), dtype=params.dtype, device=params.device)
    if params.ndim != 3 or params.shape[2] != len(scale):
        raise ValueError(
            f"params must be (N, K, {len(scale)}) for control {control!r}, "
            f"got shape {tuple(params.shape)}"
        )
    return (params / scale).clamp(-1.0, 1.0).reshape(params.shape[0], -1)


def _preview(array: np.ndarray, limit: int = 8) -> str:
    flat = array.reshape(-1)
    shown = np.array2string(flat[:limit], precision=3, separator=", ")
    more = f" ... ({flat.size} values)" if flat.size > limit else ""
    return f"{shown}{more}"
