"""Natively batched Gymnasium vector environment: N episodes, one network call per step.

``gym.make_vec("LCVG-Sprites-v0", num_envs=N, vectorization_mode="vector_entry_point")``
returns an ``LCVGVectorEnv``. All N environments share one ``Simulator`` batch; a step runs
the generator and the mask network once for all of them.

Autoreset (``gymnasium.vector.AutoresetMode``, in ``metadata["autoreset_mode"]``):

- ``NEXT_STEP`` (default): an environment that ended returns its final observation; on the
  next ``step`` it is reset (its action is ignored) and returns the first observation of the
  new episode with reward 0 and terminated = truncated = False.
- ``SAME_STEP``: an environment that ends is reset within the same ``step``; the observation
  is the new episode's first, and ``info["final_obs"]`` (object array, None elsewhere) and
  ``info["final_info"]`` hold the last ones, with masks ``_final_obs`` / ``_final_info``.
- ``DISABLED``: nothing is reset; call ``reset(options={"reset_mask": bool array (N,)})``.

Only the environments that ended are reset; the others' episodes go on untouched (their
frames, masks, targets, step counters and random generators). Infos are batched dicts with
``_key`` masks, as Gymnasium's vector environments return them.

``reset`` options other than ``reset_mask`` and ``lcvg_env.env.RESET_OPTIONS``, options
that are not a dict and complex actions raise, as in ``LCVGEnv``; so do ``reset`` and
``step`` after ``close()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from lcvg_env.env import RENDER_FPS, LCVGCore
from lcvg_env.spaces import check_open, check_positive_int, check_reset_options
from lcvg_env.starts import check_frames


class LCVGVectorEnv(VectorEnv):
    """N lcvg environments batched in one simulator (see the module docstring).

    Args:
        num_envs: N >= 1.
        autoreset_mode: ``AutoresetMode`` or its value ("NextStep", "SameStep", "Disabled").
        render_mode: None or "rgb_array" (``render()`` returns a tuple of N frames).
        **kwargs: as for ``lcvg_env.env.LCVGEnv`` (checkpoint, control, task, ...).
    """

    metadata = {
        "render_modes": ["rgb_array"],
        "render_fps": RENDER_FPS,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        num_envs = check_positive_int(num_envs, "num_envs")
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ValueError(
                f"autoreset_mode must be one of {[m.value for m in AutoresetMode]}, got "
                f"{autoreset_mode!r}"
            ) from None
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.core = LCVGCore(num_envs, **kwargs)
        self.num_envs = num_envs
        self.autoreset_mode = mode
        self.render_mode = render_mode
        self.metadata = dict(self.metadata, autoreset_mode=mode)
        self.single_observation_space = self.core.single_observation_space
        self.single_action_space = self.core.single_action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self.reset_options = ("reset_mask", *self.core.reset_options)
        """Keys ``reset`` accepts in ``options``."""

    def reset(
        self,
        *,
        seed: int | list[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Reset all environments, or those in ``options["reset_mask"]``.

        Args:
            seed: None, an int (environment i gets ``seed + i``) or a list of N seeds.
            options: ``reset_mask`` (bool (N,)), ``frame`` (uint8 (H, W, 3) for every reset
                environment, or (N, H, W, 3) one per environment), ``target`` (reach task).

        Returns:
            Batched observations of all N environments and infos of the reset ones.

        Raises:
            RuntimeError: the environment was closed.
            TypeError: ``options`` is neither None nor a dict.
            ValueError: an unknown option key (named), a bad seed, mask, frame or target.
        """
        check_open(self.closed, "LCVGVectorEnv", "reset")
        options = check_reset_options(options, self.reset_options, "LCVGVectorEnv")
        n = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, int | np.integer) and not isinstance(seed, bool):
            seeds = [int(seed) + i for i in range(n)]
            self._np_random, self._np_random_seed = seeding.np_random(int(seed))
        elif isinstance(seed, list | tuple) and len(seed) == n:
            seeds = list(seed)
        else:
            raise ValueError(f"seed must be None, an int or a list of {n} seeds, got {seed!r}")
        mask = np.ones(n, dtype=bool)
        if "reset_mask" in options:
            mask = options.pop("reset_mask")
            if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (n,):
                raise ValueError(
                    f"options['reset_mask'] must be a bool numpy array of shape ({n},), got "
                    f"{type(mask).__name__} {getattr(mask, 'dtype', '')} "
                    f"{getattr(mask, 'shape', '')}"
                )
            if not mask.any():
                raise ValueError("options['reset_mask'] must select at least one environment")
        indices = np.flatnonzero(mask)
        per_env = self._per_env_options(options, indices)
        self.core.reset(indices, [seeds[i] for i in indices], per_env)
        self._autoreset[indices] = False
        return self.core.observations(), _with_masks(self.core.infos(), mask)

    def _per_env_options(
        self, options: dict[str, Any], indices: np.ndarray
    ) -> list[dict[str, Any]]:
        frames = None
        if "frame" in options:
            value = options["frame"]
            if isinstance(value, np.ndarray) and value.ndim == 4:
                frames = check_frames(value, 'reset(options={"frame": ...})')
                if frames.shape[0] != self.num_envs:
                    raise ValueError(
                        f'options["frame"] with a batch dimension must hold {self.num_envs} '
                        f"frames, got shape {frames.shape}"
                    )
        out = []
        for i in indices.tolist():
            single = dict(options)
            if frames is not None:
                single["frame"] = frames[i]
            out.append(single)
        return out

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all N environments (autoreset as in ``autoreset_mode``).

        Args:
            actions: (N, K*P) float32 in [-1, 1] (or (N, H, W) masks for "mask" control).

        Returns:
            observations, rewards (N,) float64, terminated (N,), truncated (N,), infos.

        Raises:
            RuntimeError: before the first ``reset`` or after ``close``.
        """
        check_open(self.closed, "LCVGVectorEnv", "step")
        everyone = np.ones(self.num_envs, dtype=bool)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            pending = self._autoreset.copy()
            rewards, terminated, truncated = self.core.step(actions, frozen=pending)
            if pending.any():
                indices = np.flatnonzero(pending)
                self.core.reset(indices)
                rewards[indices] = 0.0
                terminated[indices] = False
                truncated[indices] = False
            self._autoreset = terminated | truncated
            infos = _with_masks(self.core.infos(), everyone)
            return self.core.observations(), rewards, terminated, truncated, infos
        rewards, terminated, truncated = self.core.step(actions)
        done = terminated | truncated
        if self.autoreset_mode == AutoresetMode.DISABLED or not done.any():
            self._autoreset = done
            infos = _with_masks(self.core.infos(), everyone)
            return self.core.observations(), rewards, terminated, truncated, infos
        # SAME_STEP: keep the last observation and info, then start the next episode now
        indices = np.flatnonzero(done)
        final_obs = np.full(self.num_envs, None, dtype=object)
        last = self.core.observations(indices)
        for j, i in enumerate(indices.tolist()):
            if isinstance(last, dict):
                final_obs[i] = {key: value[j] for key, value in last.items()}
            else:
                final_obs[i] = last[j]
        final_info = _scatter(self.core.infos(indices), indices, self.num_envs)
        self.core.reset(indices)
        infos = _with_masks(self.core.infos(), everyone)
        infos["final_obs"], infos["_final_obs"] = final_obs, done.copy()
        infos["final_info"], infos["_final_info"] = final_info, done.copy()
        self._autoreset[:] = False
        return self.core.observations(), rewards, terminated, truncated, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        """Return N uint8 frames with overlays (``render_mode="rgb_array"``), else None."""
        if self.render_mode is None:
            return None
        return tuple(self.core.render_frame(i) for i in range(self.num_envs))

    @property
    def simulator(self) -> Any:
        """The underlying batched ``Simulator``."""
        return self.core.sim


def _with_masks(info: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, Any]:
    """Gymnasium's vector info layout: every ``key`` paired with a bool mask ``_key``."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if not mask.all():
            value = value.copy()
            value[~mask] = 0
        out[key] = value
        out[f"_{key}"] = mask.copy()
    return out


def _scatter(info: dict[str, np.ndarray], indices: np.ndarray, n: int) -> dict[str, Any]:
    """Infos of ``indices`` spread into batches of ``n`` (zeros elsewhere) with masks."""
    mask = np.zeros(n, dtype=bool)
    mask[indices] = True
    out: dict[str, Any] = {}
    for key, value in info.items():
        full = np.zeros((n, *value.shape[1:]), dtype=value.dtype)
        full[indices] = value
        out[key] = full
        out[f"_{key}"] = mask.copy()
    return out
