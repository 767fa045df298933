"""The ground-truth twin: a Gymnasium environment over the true sprites world.

``SpritesRealEnv`` is the real world beside the learned simulator ``lcvg_env.env.LCVGEnv``:
the same action and observation spaces, ``observation_keys``, tasks (``lcvg_env.tasks``),
rewards and info keys, but its frames are rendered from a sprites scene
(``lcvg_env.world.scene``) whose objects move exactly as the actions command. A policy can be
run in both, and the learned simulator judged against the truth (``lcvg_env.world.pairing``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from lcvg_env.env import check_interface, single_info, task_and_spaces, warn_no_render_mode
from lcvg_env.render import upscale
from lcvg_env.spaces import (
    PARAMS_PER_OBJECT,
    ActionRanges,
    check_open,
    check_reset_options,
    validate_actions,
)
from lcvg_env.tasks import Task
from lcvg_env.world.locate import describe
from lcvg_env.world.scene import (
    MAX_OBJECTS,
    STYLES,
    Poses,
    Rendered,
    Scene,
    SceneConfig,
    render,
    render_background,
    sample_scene,
)

__all__ = ["RESET_OPTIONS", "SpritesRealEnv", "forward_motion"]

RESET_OPTIONS = ("scene", "target")
"""Keys ``SpritesRealEnv.reset`` accepts in ``options``."""
RENDER_FPS = 10
"""Frames per second a recorded video of the twin plays at (as ``lcvg_env.env.RENDER_FPS``)."""
_SCENE_TRIES = 20  # scenes drawn at reset until the K controlled objects are all in view
_MIN_VISIBLE = 4  # pixels each controlled object must show in the first frame (when possible)
_MISSING_COST = 4.0  # matching cost of an object with no visible pixel (> any distance, 2*sqrt 2)
_MAX_EXACT = 6  # exact matching over permutations up to this many objects, greedy beyond


def forward_motion(params: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel forward motion of physical control parameters, as ``lcvg_env.control`` applies it.

    ``lcvg_env.control.params_to_matrix`` moves a point q of an object to
    ``p = c + A (q - c) + t`` about a pivot c; this returns ``A`` and ``t`` in pixels.

    Args:
        params: (K, 2) ``(dx, dy)`` or (K, 6) ``(dx, dy, rotation, log_scale_x, log_scale_y,
            shear)`` in normalised units (``lcvg_env.spaces.action_to_params``).
        size: frame (H, W).

    Returns:
        ``A`` float64 (K, 2, 2) = ``R(rotation) @ [[1, shear], [0, 1]] @ diag(sx, sy)`` (the
        identity for (K, 2)) and ``t`` float64 (K, 2) = ``(dx * W / 2, dy * H / 2)`` pixels.
    """
    params = np.asarray(params, dtype=np.float64)
    if params.ndim != 2 or params.shape[1] not in (2, 6):
        raise ValueError(f"params must have shape (K, 2) or (K, 6), got {params.shape}")
    h, w = size
    k = params.shape[0]
    t = params[:, :2] * np.array([w / 2.0, h / 2.0])
    if params.shape[1] == 2:
        return np.broadcast_to(np.eye(2), (k, 2, 2)).copy(), t
    rot, lsx, lsy, shear = params[:, 2], params[:, 3], params[:, 4], params[:, 5]
    cos, sin = np.cos(rot), np.sin(rot)
    sx, sy = np.exp(lsx), np.exp(lsy)
    a = np.empty((k, 2, 2))
    a[:, 0, 0] = cos * sx
    a[:, 0, 1] = (cos * shear - sin) * sy
    a[:, 1, 0] = sin * sx
    a[:, 1, 1] = (sin * shear + cos) * sy
    return a, t


class SpritesRealEnv(gym.Env):
    """The true sprites world, with the learned environment's interface.

    ## Description
    A sprites scene (``lcvg_env.world.scene``: background, K or more textured objects; style
    "classic" or "varied") in which each action moves the K controlled objects exactly: the
    ground-truth twin of ``lcvg_env.env.LCVGEnv`` on a sprites model. Action and observation
    spaces, ``observation_keys``, tasks, rewards and info keys are those of ``LCVGEnv`` for the
    same ``control``, ``num_objects`` and ``task``.

    ## Action Space
    As ``LCVGEnv`` (``lcvg_env.spaces``): ``control="position"``: ``Box(-1, 1, (2K,),
    float32)``, per object (dx, dy); ``control="affine"``: ``Box(-1, 1, (6K,), float32)``, per
    object (dx, dy, rotation, log-scale x, log-scale y, shear), scaled by ``action_ranges``
    (an entry of 1 moves by ``max_translation`` normalised units, 1 unit = half the frame:
    4 pixels at 64x64 with the default 0.125). Object k's row is applied as the learned
    simulator applies it (``lcvg_env.control.params_to_matrix``, forward motion
    ``p = c + A (q - c) + t``, see :func:`forward_motion`), the pivot c being the object's
    true centre (its area centroid) where the learned simulator uses its mask centroid: the
    object's ``Poses`` become ``center += t``, ``linear = A @ linear``. "mask" control is not
    offered (there is no true answer to "draw this mask").

    ## Observation Space
    As ``LCVGEnv``: the frame ``Box(0, 255, (S, S, 3), uint8)``, or a ``Dict`` adding
    ``"mask"`` (S, S, 1) uint8 0/255 (the union of every scene object's visible mask),
    ``"centroids"`` (2K,) float32 and, for reach, ``"target"`` (2K,) float32.

    ## Objects
    The scene holds at least K objects (``scene_objects``). The K controlled objects are the K
    with the largest visible area in the first frame, largest first, ties broken by the first
    pixel in raster order: the order in which the learned environment numbers the connected
    components of its first mask (``lcvg_env.control.object_masks``). Two objects touching in
    the first frame are two objects here but one component there; :meth:`match_objects`
    re-pairs them with the learned environment's objects. The other scene objects do not move
    (the learned simulator keeps foreground beyond its K components in place). An object's
    centroid (observation, info) is that of its VISIBLE pixels (front objects hide the ones
    behind), normalised with ``align_corners=False`` (``x = (2 x_px + 1) / W - 1``); while it
    has none (hidden behind another), ``present`` is False and the last known centroid is
    reported, as the learned environment does.

    ## Borders and sizes
    After each step an object's centre is clipped to the frame (``[0, S - 1]`` pixels), so an
    object stays at least partly in view (about half of it at worst); an action pushing it
    further is cut there, and the info reports where the object actually is. Under affine
    control the singular values of an object's ``linear`` (its radii along its two axes) are
    kept within [0.5, S] pixels: a shape shrinks to a speck or grows to twice the frame, no
    further (the learned simulator loses a mask that shrinks to nothing; the twin keeps it).

    ## Rendering
    No illumination flicker (the light is static); sensor noise (the scene's ``noise_std``,
    2 grey levels by default) is drawn for every frame from a generator seeded at reset when
    ``noise`` is True. ``render()`` returns the frame upscaled by ``256 // S``
    (``lcvg_env.render.upscale``), without overlays.

    ## Rewards, Episode End, Info
    As ``LCVGEnv``: the task's rewards (free: 0; reach: progress toward the targets plus the
    success bonus), termination on reach success, truncation at ``max_episode_steps``; info
    ``step``, ``centroids`` (K, 2), ``centroids_px`` (K, 2), ``present`` (K,),
    ``objects_found`` (how many of the K controlled objects show a pixel in the first frame:
    K unless all 20 scene draws left one hidden, or after :meth:`match_objects`), plus the
    task's.

    ## Starting State
    A scene drawn from ``np_random`` (until every controlled object shows at least 4 pixels,
    up to 20 draws), or ``reset(options={"scene": (Scene, Poses)})``; reach targets drawn by
    the task or ``options={"target": (K, 2) normalised}``. Other option keys, and options that
    are not a dict, are refused; so are ``reset`` and ``step`` after ``close()``.

    ## Arguments
    ``control`` ("position", "affine"), ``num_objects`` K (an int >= 1, numpy integers
    too; 2.5, "2" and True are refused), ``task`` ("free", "reach" or a
    ``Task``), ``task_kwargs``, ``observation_keys``, ``action_ranges``,
    ``max_episode_steps``, ``render_mode`` (None or "rgb_array"), ``style`` (``STYLES``),
    ``size`` S (64), ``scene_objects`` (inclusive range of objects per scene, default
    ``(K, max(K, 3))`` capped at the style's maximum; its low end must be >= K), ``noise``
    (sensor noise, True), ``scene_config`` (a ``SceneConfig`` used as it is instead of
    ``style``, ``size`` and ``scene_objects``).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": RENDER_FPS}

    def __init__(
        self,
        control: str = "position",
        num_objects: int = 1,
        task: str | Task = "free",
        task_kwargs: Mapping[str, Any] | None = None,
        observation_keys: Sequence[str] = ("frame",),
        action_ranges: ActionRanges | Mapping[str, float] | None = None,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        style: str = "classic",
        size: int = 64,
        scene_objects: tuple[int, int] | None = None,
        noise: bool = True,
        scene_config: SceneConfig | None = None,
    ) -> None:
        _, k, self.max_episode_steps, self.action_ranges = check_interface(
            control, 1, num_objects, max_episode_steps, action_ranges
        )
        if control not in PARAMS_PER_OBJECT:
            raise ValueError(
                f"SpritesRealEnv supports control 'position' or 'affine', got {control!r}"
            )
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, got "
                f"{render_mode!r}"
            )
        self.scene_config = self._scene_config(k, style, size, scene_objects, scene_config)
        self.control = control
        self.num_objects = k
        self.noise = bool(noise)
        s = self.scene_config.size
        self.resolution = (s, s)
        self.task, self.observation_keys, self.observation_space, self.action_space = (
            task_and_spaces(control, 1, k, self.resolution, task, task_kwargs, observation_keys)
        )
        self.render_mode = render_mode
        self._scale = np.asarray(self.action_ranges.scale(control), dtype=np.float64)
        self._coords = (2.0 * np.arange(s, dtype=np.float64) + 1.0) / s - 1.0  # pixel centres
        self._pixels_per_unit = np.array([s / 2.0, s / 2.0])
        self._scene: Scene | None = None
        self._poses: Poses | None = None
        self._rendered: Rendered | None = None
        self._controlled = np.arange(k, dtype=np.int64)
        self._centroids = np.zeros((k, 2), dtype=np.float32)
        self._present = np.zeros(k, dtype=bool)
        self._steps = 0
        self._objects_found = 0
        self._noise_rng: np.random.Generator | None = None
        self._closed = False

    @staticmethod
    def _scene_config(
        k: int,
        style: str,
        size: int,
        scene_objects: tuple[int, int] | None,
        scene_config: SceneConfig | None,
    ) -> SceneConfig:
        if scene_config is not None:
            if not isinstance(scene_config, SceneConfig):
                raise TypeError(
                    f"scene_config must be a SceneConfig, got {type(scene_config).__name__}"
                )
            config = scene_config
        else:
            if style not in STYLES:
                raise ValueError(f"style must be one of {STYLES}, got {style!r}")
            most = MAX_OBJECTS[style]
            if k > most:
                raise ValueError(
                    f"num_objects={k} is more than a {style!r} scene can hold ({most} objects)"
                )
            objects = (k, min(max(k, 3), most)) if scene_objects is None else scene_objects
            config = SceneConfig(size=size, objects=tuple(objects), style=style)  # type: ignore[arg-type]
        if config.objects[0] < k:
            raise ValueError(
                f"the scene must hold at least num_objects={k} objects, but its range of "
                f"objects is {config.objects}"
            )
        return config

    # --- episodes -----------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Start an episode (see Starting State); returns and raises as ``LCVGEnv.reset``.

        The accepted option keys are this module's ``RESET_OPTIONS``; a "scene" that is no
        (Scene, Poses) pair is a TypeError, one that does not fit this environment a ValueError.
        """
        check_open(self._closed, "SpritesRealEnv", "reset")
        options = check_reset_options(options, RESET_OPTIONS, "SpritesRealEnv")
        super().reset(seed=seed)
        rng = self.np_random
        if options.get("scene") is not None:
            scene, poses = self._given_scene(options["scene"])
            rendered = render(scene, poses)
        else:
            for _ in range(_SCENE_TRIES):
                scene, poses = sample_scene(self.scene_config, rng)
                rendered = render(scene, poses)
                areas = np.sort(rendered.visible.sum(axis=(1, 2)))[::-1]
                if areas[self.num_objects - 1] >= _MIN_VISIBLE:
                    break
        self._noise_rng = np.random.default_rng(int(rng.integers(2**62)))
        self._scene, self._poses = scene, poses
        self._render()
        assert self._rendered is not None
        self._controlled = _order_by_area(self._rendered.visible)[: self.num_objects]
        self._present[:] = False
        self._centroids[:] = 0.0
        self._update_centroids()
        self._objects_found = int(self._present.sum())
        self.task.reset(
            np.array([0]), self._centroids[None].copy(), self._present[None].copy(), [rng],
            [options],
        )
        self._steps = 0
        return self._observe()

    def _given_scene(self, value: Any) -> tuple[Scene, Poses]:
        if (
            not isinstance(value, tuple | list)
            or len(value) != 2
            or not isinstance(value[0], Scene)
            or not isinstance(value[1], Poses)
        ):
            raise TypeError(
                'reset(options={"scene": ...}) must be a (Scene, Poses) pair, got '
                f"{type(value).__name__}"
            )
        scene, poses = value
        if scene.size != self.resolution[0]:
            raise ValueError(
                f"the given scene is {scene.size}x{scene.size}, this environment is "
                f"{self.resolution[0]}x{self.resolution[1]}"
            )
        if scene.num_objects < self.num_objects or poses.num_objects != scene.num_objects:
            raise ValueError(
                f"the given scene must hold at least num_objects={self.num_objects} objects "
                f"with a pose each, got {scene.num_objects} objects and "
                f"{poses.num_objects} poses"
            )
        return scene, poses.copy()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Move the controlled objects by ``action`` (see Action Space) and render.

        Returns (observation, reward, terminated, truncated, info).
        """
        check_open(self._closed, "SpritesRealEnv", "step")
        if self._poses is None:
            raise RuntimeError("call reset() before step()")
        k, s = self.num_objects, self.resolution[0]
        array = validate_actions(action, self.control, k, self.resolution, 1)[0]
        params = array.astype(np.float64).reshape(k, -1) * self._scale
        poses = self._poses
        idx = self._controlled
        if self.control == "affine":
            a, t = forward_motion(params, self.resolution)
            poses.linear[idx] = _limit_size(a @ poses.linear[idx], 0.5, float(s))
        else:  # translation only: forward_motion's A is the identity
            t = params * self._pixels_per_unit
        centers = poses.centers[idx] + t
        np.clip(centers, 0.0, s - 1.0, out=centers)
        poses.centers[idx] = centers
        self._render()
        self._update_centroids()
        rewards, terminated = self.task.step(self._centroids[None].copy(), self._present[None])
        self._steps += 1
        truncated = self.max_episode_steps is not None and self._steps >= self.max_episode_steps
        obs, info = self._observe()
        return obs, float(rewards[0]), bool(terminated[0]), bool(truncated), info

    def _render(self) -> None:
        assert self._scene is not None and self._poses is not None
        rng = self._noise_rng if self.noise else None
        self._rendered = render(self._scene, self._poses, rng=rng)

    def _update_centroids(self) -> None:
        """Visible-mask centroids of the controlled objects (last known where none)."""
        assert self._rendered is not None
        cent, present = _centroids(self._rendered.visible[self._controlled], self._coords)
        self._centroids = np.where(present[:, None], cent, self._centroids).astype(np.float32)
        self._present = present

    def _observe(self) -> tuple[Any, dict[str, Any]]:
        assert self._rendered is not None
        out: dict[str, np.ndarray] = {}
        for key in self.observation_keys:
            if key == "frame":
                out[key] = self._rendered.frame.copy()
            elif key == "mask":
                union = np.any(self._rendered.visible, axis=0, keepdims=True)  # (1, S, S)
                out[key] = np.moveaxis(union, 0, -1).astype(np.uint8) * np.uint8(255)
            elif key == "centroids":
                out[key] = np.clip(self._centroids, -1.0, 1.0).reshape(-1).astype(np.float32)
            else:
                out[key] = self.task.observation(key, None)[0]
        obs: Any = out["frame"] if self.observation_keys == ("frame",) else out
        return obs, self._info()

    def _info(self) -> dict[str, Any]:
        s = np.float32(self.resolution[0])
        pixels = ((self._centroids + np.float32(1.0)) * s - np.float32(1.0)) / np.float32(2.0)
        info: dict[str, Any] = {
            "step": self._steps,
            "centroids": self._centroids.copy(),
            "centroids_px": pixels,
            "present": self._present.copy(),
            "objects_found": self._objects_found,
        }
        info.update(single_info(self.task.info(None)))
        return info

    # --- paired evaluation --------------------------------------------------------------------
    def _require_started(self) -> tuple[Scene, Poses, Rendered]:
        if self._scene is None or self._poses is None or self._rendered is None:
            raise RuntimeError("call reset() first")
        return self._scene, self._poses, self._rendered

    @property
    def scene(self) -> Scene:
        """The current episode's :class:`Scene` (M objects, M >= K)."""
        return self._require_started()[0]

    @property
    def poses(self) -> Poses:
        """A copy of the scene objects' current :class:`Poses` (M objects)."""
        return self._require_started()[1].copy()

    @property
    def controlled(self) -> np.ndarray:
        """int64 (K,): the scene index of controlled object k (action row k)."""
        return self._controlled.copy()

    @property
    def frame(self) -> np.ndarray:
        """The current frame, uint8 (S, S, 3) (a copy)."""
        return self._require_started()[2].frame.copy()

    def true_masks(self) -> np.ndarray:
        """Return bool (K, S, S): the controlled objects' visible masks in the current frame."""
        return self._require_started()[2].visible[self._controlled].copy()

    def all_masks(self) -> np.ndarray:
        """Return bool (M, S, S): every scene object's visible mask in the current frame."""
        return self._require_started()[2].visible.copy()

    def full_masks(self) -> np.ndarray:
        """Return bool (M, S, S): every scene object's whole mask, hidden parts included."""
        return self._require_started()[2].full.copy()

    def other_masks(self) -> np.ndarray:
        """Return bool (M - K, S, S): the visible masks of the scene objects not controlled."""
        visible = self._require_started()[2].visible
        return np.delete(visible, self._controlled, axis=0)

    def background(self) -> np.ndarray:
        """uint8 (S, S, 3): the object-free lit background (no shadows, no noise)."""
        return render_background(self._require_started()[0])

    def match_objects(self, centroids: Any, targets: Any = None, present: Any = None
                      ) -> np.ndarray:
        """Choose and order the controlled objects to match another environment's objects.

        Picks the K scene objects and their order that minimise the summed distance between
        ``centroids[k]`` and controlled object k's visible centroid (exact over all orders for
        K <= 6, greedy beyond), so that object k means the same object in both environments.
        Objects the other environment did not find (``present[k]`` False) do not steer the
        choice: they take what the found ones leave, so a lost object never pulls a found one
        onto the wrong scene object.
        The task restarts from the new objects' centroids: reach targets stay with the slots
        (object k keeps target k) unless ``targets`` (K, 2) gives new ones. Call it right after
        reset.

        Args:
            centroids: (K, 2) or (2K,) normalised (x, y), e.g. the learned environment's
                ``info["centroids"]`` at reset.
            targets: optional (K, 2) normalised reach targets for the new order.
            present: optional bool (K,), which of ``centroids`` are objects the other
                environment found (e.g. its ``info["present"]``); None: all of them.

        Returns:
            int64 (K,): the scene index of each controlled object (also :attr:`controlled`).
        """
        _, _, rendered = self._require_started()
        k = self.num_objects
        points = np.asarray(centroids, dtype=np.float64)
        if points.shape not in ((k, 2), (2 * k,)) or not np.all(np.isfinite(points)):
            raise ValueError(
                f"centroids must be finite, shaped ({k}, 2) or ({2 * k},), got "
                f"{points.shape}"
            )
        points = points.reshape(k, 2)
        found = np.ones(k, dtype=bool) if present is None else np.asarray(present)
        if found.shape != (k,) or found.dtype != np.bool_:
            raise ValueError(f"present must be a bool array ({k},), got {describe(present)}")
        m = rendered.visible.shape[0]
        cent, visible = _centroids(rendered.visible, self._coords)
        cost = np.linalg.norm(points[:, None] - cent[None], axis=-1)  # (K, M)
        cost[~found] = _MISSING_COST  # one cost for every object: lost ones choose last
        cost[:, ~visible] += _MISSING_COST
        if k <= _MAX_EXACT:
            orders = np.array(list(itertools.permutations(range(m), k)), dtype=np.int64)
            totals = cost[np.arange(k)[None], orders].sum(axis=1)
            order = orders[int(np.argmin(totals))]
        else:  # greedy: the closest pair first
            order = np.full(k, -1, dtype=np.int64)
            work = cost.copy()
            for _ in range(k):
                i, j = np.unravel_index(int(np.argmin(work)), work.shape)
                order[i] = j
                work[i, :] = np.inf
                work[:, j] = np.inf
        self._controlled = order
        self._present[:] = False
        self._update_centroids()
        self._objects_found = int(self._present.sum())
        options: dict[str, Any] = {}
        if targets is not None:
            options["target"] = targets
        elif "target" in self.task.observation_keys:
            options["target"] = self.task.info(None)["target"][0]
        self.task.reset(
            np.array([0]), self._centroids[None].copy(), self._present[None].copy(),
            [self.np_random], [options],
        )
        return order.copy()

    def observe(self) -> tuple[Any, dict[str, Any]]:
        """Return the current (observation, info), as the last reset or step returned them."""
        self._require_started()
        return self._observe()

    # --- rendering ----------------------------------------------------------------------------
    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """``rgb_array``: uint8 (S * s, S * s, 3), the frame upscaled by ``s = 256 // S``."""
        if self.render_mode is None:
            warn_no_render_mode(self.metadata["render_modes"])
            return None
        frame = self._require_started()[2].frame
        return upscale(frame, max(1, 256 // self.resolution[0]))

    def close(self) -> None:
        """Mark the environment closed: ``reset`` and ``step`` raise from now on (idempotent)."""
        self._closed = True


def _centroids(masks: np.ndarray, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised centroids (n, 2) float64 ((0, 0) when empty) and presence (n,) of masks."""
    rows = np.count_nonzero(masks, axis=2).astype(np.float64)  # (n, S): pixels per row
    cols = np.count_nonzero(masks, axis=1).astype(np.float64)  # (n, S): pixels per column
    area = rows.sum(axis=1)
    safe = np.maximum(area, 1.0)[:, None]
    cent = np.concatenate([cols @ coords[:, None], rows @ coords[:, None]], axis=1) / safe
    return cent, area > 0


def _limit_size(linear: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip the singular values of (K, 2, 2) maps to [low, high] pixels (no-op when inside)."""
    sq = (linear**2).sum(axis=(1, 2))
    det = linear[:, 0, 0] * linear[:, 1, 1] - linear[:, 0, 1] * linear[:, 1, 0]
    root = np.sqrt(np.maximum(sq * sq - 4 * det * det, 0.0))
    big = np.sqrt((sq + root) / 2)
    small = np.sqrt(np.maximum((sq - root) / 2, 0.0))
    bad = (big > high) | (small < low)
    if not bad.any():
        return linear
    u, sv, vt = np.linalg.svd(linear[bad])
    linear = linear.copy()
    linear[bad] = (u * np.clip(sv, low, high)[:, None, :]) @ vt
    return linear


def _order_by_area(visible: np.ndarray) -> np.ndarray:
    """Object indices by visible area, largest first; ties: first pixel in raster order."""
    m = visible.shape[0]
    flat = visible.reshape(m, -1)
    area = flat.sum(axis=1)
    first = np.where(area > 0, flat.argmax(axis=1), flat.shape[1])
    return np.lexsort((first, -area)).astype(np.int64)
