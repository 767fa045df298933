"""stable-baselines3 ``VecEnv`` over the batched lcvg simulator.

stable-baselines3 does not accept Gymnasium vector environments, and wrapping N single
environments in its ``DummyVecEnv`` would run the networks N times per step. ``LCVGVecEnv``
drives one batched ``LCVGCore`` instead, with SB3's conventions: an environment that ends is
reset within the same ``step_wait``; its last observation is in
``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]`` says whether the
episode was cut by the time limit rather than terminated. Seeds and options set with
``seed()`` / ``set_options()`` apply at the next ``reset()`` (options as ``LCVGEnv.reset``
takes them: unknown keys raise there). ``reset`` and ``step`` raise after ``close()``.

Example::

    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor
    env = VecMonitor(LCVGVecEnv(num_envs=8, checkpoint="sprites_small.safetensors",
                                start_frames="sprites_starts.npz", max_episode_steps=50))
    PPO("CnnPolicy", env).learn(10_000)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from lcvg_env.env import LCVGCore, single_info
from lcvg_env.spaces import check_open, check_positive_int


class LCVGVecEnv(VecEnv):
    """N lcvg environments for stable-baselines3 (see the module docstring).

    Args:
        num_envs: N >= 1.
        render_mode: None or "rgb_array" (``get_images`` / ``render`` tile the N frames).
        **kwargs: as for ``lcvg_env.env.LCVGEnv`` (checkpoint, control, task,
            max_episode_steps, ...).
    """

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, **kwargs: Any) -> None:
        num_envs = check_positive_int(num_envs, "num_envs")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.core = LCVGCore(num_envs, **kwargs)
        self.render_mode = render_mode
        core = self.core
        super().__init__(num_envs, core.single_observation_space, core.single_action_space)
        self._actions: Any = None
        self._closed = False

    def reset(self) -> VecEnvObs:
        """Reset every environment (with the seeds/options set since the last reset)."""
        check_open(self._closed, "LCVGVecEnv", "reset")
        indices = np.arange(self.num_envs)
        options = [dict(option) for option in self._options]
        self.core.reset(indices, list(self._seeds), options, owner="LCVGVecEnv")
        self._reset_seeds()
        self._reset_options()
        infos = self.core.infos()
        self.reset_infos = [single_info(infos, i) for i in range(self.num_envs)]
        return self.core.observations()

    def step_async(self, actions: np.ndarray) -> None:
        """Store the actions (N, K*P) of the next ``step_wait``."""
        check_open(self._closed, "LCVGVecEnv", "step_async")
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        """Step all environments; the ones that end are reset at once (SB3 convention).

        Returns:
            observations, rewards (N,) float32, dones (N,) bool, list of N info dicts.
        """
        check_open(self._closed, "LCVGVecEnv", "step_wait")
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions)")
        actions, self._actions = self._actions, None
        rewards, terminated, truncated = self.core.step(actions)
        done = terminated | truncated
        batched = self.core.infos()
        infos = [single_info(batched, i) for i in range(self.num_envs)]
        if done.any():
            indices = np.flatnonzero(done)
            last = self.core.observations(indices)
            for j, i in enumerate(indices.tolist()):
                if isinstance(last, dict):
                    infos[i]["terminal_observation"] = {k: v[j] for k, v in last.items()}
                else:
                    infos[i]["terminal_observation"] = last[j]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            self.core.reset(indices)
            after = self.core.infos(indices)
            for j, i in enumerate(indices.tolist()):
                self.reset_infos[i] = single_info(after, j)
        return self.core.observations(), rewards.astype(np.float32), done, infos

    def close(self) -> None:
        """Mark the environments closed: ``reset`` and ``step`` raise from now on.

        Nothing else is released (the model is shared and freed with the last reference).
        """
        self._closed = True

    def get_images(self) -> Sequence[np.ndarray | None]:
        """One uint8 frame with overlays per environment."""
        return [self.core.render_frame(i) for i in range(self.num_envs)]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Return the attribute of this batched environment, once per index."""
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of this batched environment (shared by all indices)."""
        setattr(self, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        """Call a method of this batched environment once per index."""
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        """No environment is wrapped in a Gymnasium wrapper."""
        return [False for _ in self._get_indices(indices)]
