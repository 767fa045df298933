"""Gymnasium environment over a trained layered generator, and the batched core it shares.

``LCVGCore`` holds everything the three adapters share: the model, the batched ``Simulator``,
the task, the first-frame source, per-environment random generators and step counters, and the
numpy/torch boundary (observations, infos, renders). ``LCVGEnv`` (this module) drives one
environment, ``lcvg_env.vector.LCVGVectorEnv`` N natively batched ones and
``lcvg_env.sb3.LCVGVecEnv`` N for stable-baselines3.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding

from lcvg_env.checkpoint import find_checkpoint
from lcvg_env.control import trusted_values
from lcvg_env.models import LayeredGenerator, resolve_device
from lcvg_env.render import HumanWindow, compose, upscale
from lcvg_env.simulator import Simulator
from lcvg_env.spaces import (
    ActionRanges,
    action_space,
    action_to_params,
    check_action_ranges,
    check_control,
    check_max_episode_steps,
    check_observation_keys,
    check_open,
    check_positive_int,
    check_reset_options,
    check_task_observations,
    observation_space,
    validate_actions,
)
from lcvg_env.starts import StartFrames, frames_from_options, resize_frames
from lcvg_env.tasks import Task, make_task

RENDER_FPS = 10
"""Frames per second of ``render_mode="human"`` (and of recorded videos)."""
RENDER_MODES = ["rgb_array"] + (["human"] if importlib.util.find_spec("pygame") else [])
"""Render modes: "human" only where pygame (the ``[play]`` extra) is installed."""
RESET_OPTIONS = ("frame", "target")
"""Keys ``LCVGEnv.reset`` accepts in ``options`` (the vector environment adds ``reset_mask``; a
custom ``Task`` may name more in a ``reset_options`` attribute)."""
_MODEL_CACHE: dict[tuple[str, int, str], LayeredGenerator] = {}
_MODEL_CACHE_SIZE = 4


class CheckpointNotFoundError(FileNotFoundError):
    """No checkpoint for an environment.

    The message names where it was looked for and the command that makes one.
    """


def load_model(checkpoint: str | os.PathLike[str], device: str | torch.device) -> LayeredGenerator:
    """Load (and cache) the generator of ``checkpoint`` in eval mode on ``device``.

    ``checkpoint`` is a path or a name looked up by ``lcvg_env.checkpoint.find_checkpoint``
    (``$LCVG_CHECKPOINT_DIR``, ``~/.cache/lcvg``, the bundled assets). Environments built from
    the same file on the same device share one model (inference only).

    Raises:
        CheckpointNotFoundError: naming every place looked and how to train or convert one.
    """
    target = resolve_device(device)
    try:
        path = find_checkpoint(checkpoint).resolve()
    except FileNotFoundError as error:
        from lcvg_env.registration import missing_checkpoint_message

        message = missing_checkpoint_message(str(checkpoint), str(error))
        raise CheckpointNotFoundError(message) from None
    key = (str(path), path.stat().st_mtime_ns, str(target))
    model = _MODEL_CACHE.get(key)
    if model is None:
        model = LayeredGenerator.from_checkpoint(path, device=target)
        model.requires_grad_(False)
        if len(_MODEL_CACHE) >= _MODEL_CACHE_SIZE:
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _MODEL_CACHE[key] = model
    return model


def _model_from(
    checkpoint: str | os.PathLike[str] | None,
    model: LayeredGenerator | None,
    device: str | torch.device,
) -> LayeredGenerator:
    """Return the environment's generator: ``checkpoint`` loaded, or ``model`` on ``device``."""
    if (checkpoint is None) == (model is None):
        raise ValueError(
            "give exactly one of checkpoint= (a path or name) and model= (a "
            f"LayeredGenerator), got checkpoint={checkpoint!r}, model={type(model).__name__}"
        )
    if model is None:
        assert checkpoint is not None
        return load_model(checkpoint, device)
    if not isinstance(model, LayeredGenerator):
        raise TypeError(f"model must be a LayeredGenerator, got {type(model).__name__}")
    return model.to(resolve_device(device)).eval()


def _model_resolution(
    model: LayeredGenerator,
    expected_resolution: Sequence[int] | None,
    checkpoint: str | os.PathLike[str] | None,
) -> tuple[int, int]:
    """(H, W) of ``model``, checked against the resolution an environment id expects."""
    resolution = (int(model.config.resolution[0]), int(model.config.resolution[1]))
    if expected_resolution is not None and tuple(expected_resolution) != resolution:
        raise ValueError(
            f"this environment expects a model at resolution {tuple(expected_resolution)}, "
            f"the checkpoint {checkpoint!r} is at {resolution}"
        )
    return resolution


def _start_frames_from(
    start_frames: Any, checkpoint: str | os.PathLike[str] | None, resolution: tuple[int, int]
) -> StartFrames | None:
    """Load the first frames episodes draw from, or None.

    ``start_frames`` (a path, a file name looked up like checkpoints, an array), else the
    file beside the checkpoint (``_default_starts``), else None.
    """
    if start_frames is None:
        start_frames = _default_starts(checkpoint)
    elif isinstance(start_frames, str) and not Path(start_frames).expanduser().exists():
        try:  # a bundled or cached file, looked up by name like checkpoints
            start_frames = find_checkpoint(start_frames)
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"start frames {start_frames!r} not found ({error}); pass start_frames= a "
                "folder, an .npz/.npy file, an image or a uint8 array"
            ) from None
    return None if start_frames is None else StartFrames.load(start_frames, resolution)


def _render_scale(render_scale: int | None, resolution: tuple[int, int]) -> int:
    """Upscaling of ``render`` frames: ``render_scale``, by default up to 256 px."""
    scale = max(1, 256 // max(resolution)) if render_scale is None else int(render_scale)
    if scale < 1:
        raise ValueError(f"render_scale must be >= 1, got {render_scale!r}")
    return scale


def _default_starts(checkpoint: str | os.PathLike[str] | None) -> Path | None:
    """``<stem>_starts.npz`` or ``starts.npz`` beside a checkpoint file, if there is one."""
    if checkpoint is None:
        return None
    try:
        path = find_checkpoint(checkpoint)
    except FileNotFoundError:
        return None
    for candidate in (path.with_name(f"{path.stem}_starts.npz"), path.with_name("starts.npz")):
        if candidate.is_file():
            return candidate
    return None


def check_interface(
    control: str,
    num_envs: object,
    num_objects: object,
    max_episode_steps: int | None,
    action_ranges: ActionRanges | Mapping[str, float] | None,
) -> tuple[int, int, int | None, ActionRanges]:
    """Check the arguments every lcvg environment takes (``LCVGCore``, ``SpritesRealEnv``).

    Checked in this order: ``control`` (one of ``CONTROLS``), ``num_envs`` and ``num_objects``
    (ints >= 1), ``max_episode_steps``, ``action_ranges``.

    Returns:
        (N, K, max_episode_steps, ``ActionRanges``).

    Raises:
        TypeError, ValueError: as ``lcvg_env.spaces``' checks, naming the argument.
    """
    check_control(control)
    return (
        check_positive_int(num_envs, "num_envs"),
        check_positive_int(num_objects, "num_objects"),
        check_max_episode_steps(max_episode_steps),
        check_action_ranges(action_ranges),
    )


def task_and_spaces(
    control: str,
    num_envs: int,
    num_objects: int,
    resolution: tuple[int, int],
    task: str | Task,
    task_kwargs: Mapping[str, Any] | None,
    observation_keys: Sequence[str],
) -> tuple[Task, tuple[str, ...], gym.Space, gym.Space]:
    """Make an lcvg environment's task, observation keys and single-environment spaces.

    ``control``, N and K as ``check_interface`` returned them; ``resolution`` the frame
    (H, W); ``task``, ``task_kwargs`` and ``observation_keys`` the environment's arguments.

    Returns:
        (task, observation keys in canonical order, observation space, action space).

    Raises:
        ValueError: a bad task or observation keys, or keys the task cannot provide.
    """
    made = make_task(task, num_envs, num_objects, resolution, task_kwargs)
    keys = check_task_observations(check_observation_keys(observation_keys), made)
    return (
        made,
        keys,
        observation_space(keys, num_objects, resolution),
        action_space(control, num_objects, resolution),
    )


class LCVGCore:
    """Batched episode logic shared by ``LCVGEnv``, ``LCVGVectorEnv`` and ``LCVGVecEnv``.

    Args: see ``LCVGEnv`` (all of them but ``render_mode``), plus ``num_envs``.
    """

    def __init__(
        self,
        num_envs: int,
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        model: LayeredGenerator | None = None,
        start_frames: Any = None,
        control: str = "position",
        num_objects: int = 1,
        task: str | Task = "free",
        task_kwargs: Mapping[str, Any] | None = None,
        observation_keys: Sequence[str] = ("frame",),
        action_ranges: ActionRanges | Mapping[str, float] | None = None,
        max_episode_steps: int | None = None,
        device: str | torch.device = "auto",
        threshold: float = 0.5,
        track_gate: float | None = 0.5,
        tracking: str = "segment",
        autocast: bool = False,
        compile: bool | str = False,
        separate: bool = False,
        occlusion: bool = False,
        expected_resolution: Sequence[int] | None = None,
        render_scale: int | None = None,
        render_overlay: bool = True,
    ) -> None:
        self.num_envs, self.num_objects, self.max_episode_steps, self.action_ranges = (
            check_interface(control, num_envs, num_objects, max_episode_steps, action_ranges)
        )
        self.control = control
        model = _model_from(checkpoint, model, device)
        self.resolution = resolution = _model_resolution(model, expected_resolution, checkpoint)
        self.sim = Simulator(
            model,
            self.num_envs,
            control=control,
            num_objects=self.num_objects,
            threshold=threshold,
            track_gate=track_gate,
            tracking=tracking,
            autocast=autocast,
            compile=compile,
            separate=separate,
            occlusion=occlusion,
        )
        self.device = self.sim.device
        (
            self.task,
            self.observation_keys,
            self.single_observation_space,
            self.single_action_space,
        ) = task_and_spaces(
            control, self.num_envs, self.num_objects, resolution, task, task_kwargs,
            observation_keys,
        )
        self.reset_options = RESET_OPTIONS + tuple(getattr(self.task, "reset_options", ()))
        """Keys ``reset`` accepts in each environment's options."""
        self.starts = _start_frames_from(start_frames, checkpoint, resolution)
        self.render_scale = _render_scale(render_scale, resolution)
        self.render_overlay = bool(render_overlay)
        self.rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self.steps = np.zeros(self.num_envs, dtype=np.int64)
        self.started = np.zeros(self.num_envs, dtype=bool)
        self.objects_found = np.zeros(self.num_envs, dtype=np.int64)
        """(N,) how many of the K objects each episode's first frame showed."""

    # --- episodes ---------------------------------------------------------------------------
    def rng(self, index: int) -> np.random.Generator:
        """Return the random generator of environment ``index`` (created unseeded if needed)."""
        rng = self.rngs[index]
        if rng is None:
            rng, _ = seeding.np_random(None)
            self.rngs[index] = rng
        return rng

    def reset(
        self,
        indices: Sequence[int] | np.ndarray,
        seeds: Sequence[int | None] | None = None,
        options: Sequence[Mapping[str, Any] | None] | None = None,
        owner: str = "LCVGEnv",
    ) -> None:
        """Start new episodes in ``indices``.

        ``seeds[j]`` / ``options[j]`` belong to ``indices[j]``. Options (``reset_options``):
        ``"frame"`` (uint8 (H, W, 3) first frame), task options (``"target"`` for the reach
        task, ignored by the others). ``owner`` names the adapter in error messages.

        Raises:
            TypeError: an options entry that is neither None nor a dict.
            ValueError: an unknown option key (named), or a bad frame or target.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return
        seeds = list(seeds) if seeds is not None else [None] * idx.size
        options = [
            check_reset_options(option, self.reset_options, owner)
            for option in (options if options is not None else [None] * idx.size)
        ]
        frames = []
        for j, index in enumerate(idx.tolist()):
            if seeds[j] is not None:
                self.rngs[index], _ = seeding.np_random(int(seeds[j]))  # type: ignore[arg-type]
            rng = self.rng(index)
            frame = frames_from_options(options[j])
            if frame is None:
                if self.starts is None:
                    raise ValueError(
                        "no first frames: this environment has no start frames (pass "
                        "start_frames= a folder, .npz/.npy file, image or uint8 array when "
                        'making it), so reset needs options={"frame": uint8 (H, W, 3)}'
                    )
                frame = self.starts.sample(rng)
            elif frame.shape[:2] != self.resolution:
                frame = resize_frames(frame[None], self.resolution)[0]
            frames.append(frame)
        self.sim.reset(idx, np.stack(frames))
        # every reset environment draws once, so each one's stream does not depend on which
        # others reset with it; the simulator's torch generator takes the first draw
        draws = [int(self.rng(i).integers(2**62)) for i in idx.tolist()]
        self.sim.seed(draws[0])
        centroids, present = self._centroids(idx)
        self.task.reset(idx, centroids, present, [self.rng(i) for i in idx.tolist()], options)
        self.objects_found[idx] = present.sum(axis=1)
        self.steps[idx] = 0
        self.started[idx] = True

    def step(
        self, actions: Any, frozen: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step all environments.

        Args:
            actions: (N, K*P) normalised actions (or (N, H, W) masks for "mask" control).
            frozen: optional (N,) bool: environments that are about to be reset; their actions
                are ignored (an identity control is applied so the batch stays whole).

        Returns:
            rewards (N,) float64, terminated (N,) bool, truncated (N,) bool.
        """
        if not self.started.all():
            raise RuntimeError(
                f"environments {np.flatnonzero(~self.started).tolist()} were never reset; "
                "call reset() before step()"
            )
        array = validate_actions(
            actions, self.control, self.num_objects, self.resolution, self.num_envs
        )
        tensor = torch.from_numpy(array).to(self.device)
        if self.control == "mask":
            controls = tensor[:, None]  # (N, 1, H, W)
            if frozen is not None and frozen.any():
                keep = torch.from_numpy(frozen).to(self.device)
                controls = torch.where(keep[:, None, None, None], self.sim.masks, controls)
        else:
            controls = action_to_params(tensor, self.control, self.num_objects, self.action_ranges)
            if frozen is not None and frozen.any():
                controls = controls * torch.from_numpy(~frozen).to(self.device)[:, None, None]
        with trusted_values():  # validate_actions checked the values on the host
            self.sim.step(controls)
        centroids, present = self._centroids()
        rewards, terminated = self.task.step(centroids, present)
        self.steps += 1
        if self.max_episode_steps is None:
            truncated = np.zeros(self.num_envs, dtype=bool)
        else:
            truncated = self.steps >= self.max_episode_steps
        return rewards.astype(np.float64), terminated.astype(bool), truncated

    # --- views ------------------------------------------------------------------------------
    def _centroids(self, idx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        centroids = self.sim.centroids.cpu().numpy()
        present = self.sim.present.cpu().numpy()
        if idx is not None:
            return centroids[idx], present[idx]
        return centroids, present

    def observations(self, indices: np.ndarray | None = None) -> Any:
        """Batched observations (fresh arrays): (n, H, W, 3) uint8, or a dict of batches."""
        select = slice(None) if indices is None else torch.as_tensor(np.asarray(indices))
        out: dict[str, np.ndarray] = {}
        for key in self.observation_keys:
            if key == "frame":
                out[key] = self.sim.frames_uint8()[select].cpu().numpy().copy()
            elif key == "mask":
                out[key] = self.sim.masks_uint8()[select].cpu().numpy().copy()
            elif key == "centroids":
                cents = self.sim.centroids[select].clamp(-1.0, 1.0).cpu().numpy()
                out[key] = cents.reshape(-1, 2 * self.num_objects).astype(np.float32)
            else:
                chosen = None if indices is None else np.asarray(indices)
                out[key] = self.task.observation(key, chosen)
        if self.observation_keys == ("frame",):
            return out["frame"]
        return out

    def infos(self, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Return batched infos (nothing timing-dependent).

        ``step`` (n,), ``centroids`` (n, K, 2), ``centroids_px`` (n, K, 2), ``present``
        (n, K), ``objects_found`` (n,) int64 (objects the episode's first frame showed, <= K)
        and the task's entries.
        """
        idx = slice(None) if indices is None else np.asarray(indices)
        centroids, present = self._centroids()
        h, w = self.resolution
        pixels = ((centroids[idx] + 1.0) * np.array([w, h], np.float32) - 1.0) / 2.0
        info = {
            "step": self.steps[idx].copy(),
            "centroids": centroids[idx].astype(np.float32),
            "centroids_px": pixels.astype(np.float32),
            "present": present[idx].copy(),
            "objects_found": self.objects_found[idx].copy(),
        }
        info.update(self.task.info(None if indices is None else np.asarray(indices)))
        return info

    def render_frame(self, index: int) -> np.ndarray:
        """uint8 (H * scale, W * scale, 3) view of environment ``index`` with overlays."""
        frame = self.sim.frames_uint8()[index].cpu().numpy()
        if not self.render_overlay:
            return upscale(frame, self.render_scale)
        targets = None
        radius = None
        task_info = self.task.info(np.array([index]))
        if "target" in task_info:
            targets = task_info["target"][0]
            radius = getattr(self.task, "success_radius", None)
        return compose(
            frame,
            objects=self.sim.objects[index].cpu().numpy(),
            foreground=self.sim.masks[index, 0].cpu().numpy(),
            centroids=self.sim.centroids[index].cpu().numpy(),
            present=self.sim.present[index].cpu().numpy(),
            targets=targets,
            target_radius=radius,
            scale=self.render_scale,
        )


def warn_no_render_mode(modes: Sequence[str]) -> None:
    """Warn that ``render()`` was called on an environment made without a render_mode.

    ``modes``: the render modes the warning suggests (gymnasium's logger prints it).
    """
    suggested = " or ".join(f'"{mode}"' for mode in modes)
    gym.logger.warn(
        f"render() called without a render_mode; make the env with render_mode={suggested}"
    )


def single_info(batched: Mapping[str, np.ndarray], index: int = 0) -> dict[str, Any]:
    """Environment ``index``'s info from batched infos (numpy scalars become Python ones)."""
    info: dict[str, Any] = {}
    for key, value in batched.items():
        item = value[index]
        info[key] = item.item() if isinstance(item, np.generic) else item
    return info


class LCVGEnv(gym.Env):
    """Layered controllable video generation: act on the foreground mask, watch the next frame.

    ## Description
    The environment is a learned simulator (Huang et al., "Layered Controllable Video
    Generation", ECCV 2022): a mask network splits the current frame into foreground and
    background; the agent edits the foreground mask (moves, rotates, scales each object, or
    draws a new mask), and the layered generator renders the next frame in which the
    foreground follows the edited mask. Frames are generated, so every episode unrolls inside
    the model (see ``lcvg_env.simulator`` for one step in detail).

    ## Action Space
    ``control="position"``: ``Box(-1, 1, (2K,), float32)``, per object (dx, dy);
    ``control="affine"``: ``Box(-1, 1, (6K,), float32)``, per object (dx, dy, rotation,
    log-scale x, log-scale y, shear); ranges in ``lcvg_env.spaces.ActionRanges`` (default: one
    unit = 1/16 of the frame, 15 degrees, x1.25, shear 0.2). ``control="mask"``:
    ``MultiBinary((H, W))``, the next foreground mask. Object k is the k-th largest connected
    component of the first frame's mask, tracked through the episode.

    ## Objects
    ``num_objects`` K (an int >= 1; numpy integers too, 2.5, "2" or True are refused) fixes
    the action space. A first frame may show fewer than K objects (two touching objects are
    one component; K may simply be larger than any frame's count): the action space stays
    2K (6K) wide, the missing objects' rows move nothing, their ``present`` is False and
    their reported centroids start at (0, 0). With ``tracking="segment"`` or "anchored" a
    component that appears later (an object splitting from another) can take a missing slot;
    with "carry" a slot missing at reset stays empty. ``info["objects_found"]`` says how many
    of the K the episode's first frame showed, so that such episodes can be spotted (or
    skipped); K is not capped, since the count belongs to each first frame, not to the model.

    ## Observation Space
    ``Box(0, 255, (H, W, 3), uint8)``: the current generated frame. With
    ``observation_keys`` beyond ``("frame",)`` a ``Dict`` adding ``"mask"`` (H, W, 1) uint8
    0/255, ``"centroids"`` (2K,) float32 normalised object positions and, for the reach task,
    ``"target"`` (2K,) float32 (see ``lcvg_env.spaces``).

    ## Rewards
    ``task="free"``: 0. ``task="reach"``: decrease of each object's distance to its target
    (normalised units) plus 1 on success (``lcvg_env.tasks.ReachTask``).

    ## Starting State
    A first frame drawn (with ``np_random``) from ``start_frames`` (bundled samples, a dataset
    folder, a file or an array), or given as ``reset(options={"frame": uint8 (H, W, 3)})``;
    the reach task draws targets (or takes ``options["target"]``, (K, 2) normalised; other
    tasks ignore it). Option keys other than ``RESET_OPTIONS`` and options that are not a dict
    raise; so do ``reset`` and ``step`` after ``close()``.

    ## Episode End
    Termination: the reach task's success. Truncation: ``max_episode_steps`` (set by the
    registered ids through ``gym.make``'s ``TimeLimit``, or given directly).

    ## Info
    ``step``, ``centroids`` (K, 2) normalised, ``centroids_px`` (K, 2) pixels, ``present``
    (K,) bool, ``objects_found`` int (how many of the K objects the episode's first frame
    showed, constant through the episode); reach: ``target`` (K, 2), ``distance`` (K,),
    ``distance_px`` (K,), ``is_success``. Nothing that depends on timing.

    ## Arguments
    - ``checkpoint``: path or name of an lcvg checkpoint (searched in ``$LCVG_CHECKPOINT_DIR``,
      ``~/.cache/lcvg`` and the bundled assets), or ``model``: a ``LayeredGenerator``.
    - ``start_frames``: see Starting State (default: ``<checkpoint stem>_starts.npz`` or
      ``starts.npz`` beside the checkpoint, if present).
    - ``control`` ("position", "affine", "mask"), ``num_objects`` K (default 1),
      ``action_ranges`` (``ActionRanges`` or dict).
    - ``task`` ("free", "reach" or a ``Task``), ``task_kwargs``.
    - ``observation_keys`` (default ``("frame",)``), ``max_episode_steps``.
    - ``device`` ("auto", "cpu", "cuda"), ``threshold`` (mask binarisation), ``track_gate``,
      ``autocast`` (bf16 on CUDA), ``compile`` (``torch.compile`` the networks: True or a mode
      such as "reduce-overhead"), ``expected_resolution``.
    - ``tracking``: "segment" (default, the paper: after each step the objects are found again
      in M's mask of the generated frame, so the state is what the frame shows), "carry" (the
      controlled masks are the state and go exactly where the actions send them; the frames
      follow them more closely and M runs only at reset) or "anchored" (carried while M's mask
      of the generated frame confirms them); see ``lcvg_env.simulator``.
    - ``separate``: at reset, cut apart touching objects that M's mask joins, by their
      colours (``lcvg_env.control.separate_objects``), and give each object the border pixels
      M left out (``lcvg_env.compositing.take_borders``); on for the sprites ids.
    - ``occlusion``: at reset, infer which touching objects hide which: a composite model
      draws them in that depth order, and carried objects partly hidden behind others are
      completed (``lcvg_env.control.infer_occlusion``); on for the sprites ids.
    - ``render_mode`` (None, "rgb_array", "human"), ``render_scale`` (default: up to 256 px),
      ``render_overlay`` (mask tint, centroids, targets).

    ## Version History
    - v0: first release.
    """

    metadata = {"render_modes": RENDER_MODES, "render_fps": RENDER_FPS}

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            hint = ""
            if render_mode == "human":
                hint = " (\"human\" needs pygame: pip install 'lcvg[play]')"
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, got "
                f"{render_mode!r}{hint}"
            )
        self.render_mode = render_mode
        self.core = LCVGCore(1, **kwargs)
        self.observation_space = self.core.single_observation_space
        self.action_space = self.core.single_action_space
        self._window: HumanWindow | None = None
        self._closed = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Start an episode (see Starting State); returns (observation, info).

        Raises:
            RuntimeError: the environment was closed.
            TypeError: ``options`` is neither None nor a dict.
            ValueError: an option key other than ``RESET_OPTIONS`` (named), or a bad value.
        """
        check_open(self._closed, "LCVGEnv", "reset")
        options = check_reset_options(options, self.core.reset_options, "LCVGEnv")
        super().reset(seed=seed)
        self.core.rngs[0] = self.np_random
        self.core.reset([0], options=[options])
        obs, info = self._observe()
        if self.render_mode == "human":
            self.render()
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` (see Action Space).

        Returns (observation, reward, terminated, truncated, info).

        Raises:
            RuntimeError: before the first ``reset`` or after ``close``.
            TypeError, ValueError: a bad action (see ``lcvg_env.spaces.validate_actions``).
        """
        check_open(self._closed, "LCVGEnv", "step")
        # the core validates: with N = 1 it also takes the unbatched (K*P,) or (H, W) action
        rewards, terminated, truncated = self.core.step(action)
        obs, info = self._observe()
        if self.render_mode == "human":
            self.render()
        return obs, float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info

    def _observe(self) -> tuple[Any, dict[str, Any]]:
        batched = self.core.observations()
        if isinstance(batched, dict):
            obs: Any = {key: value[0] for key, value in batched.items()}
        else:
            obs = batched[0]
        return obs, single_info(self.core.infos())

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """``rgb_array``: uint8 (H * s, W * s, 3) frame with overlays; ``human``: show it."""
        if self.render_mode is None:
            warn_no_render_mode(("rgb_array", "human"))
            return None
        frame = self.core.render_frame(0)
        if self.render_mode == "human":
            if self._window is None:
                self._window = HumanWindow("lcvg", self.metadata["render_fps"])
            self._window.show(frame)
            return None
        return frame

    def close(self) -> None:
        """Close the window, if any; ``reset`` and ``step`` raise from now on (idempotent)."""
        self._closed = True
        if self._window is not None:
            self._window.close()
            self._window = None

    @property
    def simulator(self) -> Simulator:
        """The underlying batched simulator (one environment)."""
        return self.core.sim
