"""The agent's view of a reach environment, the same in the learned simulator and its twin.

Observation: the vector keys only, ``[centroids (2K), target (2K)]`` as one float32 Box in
[-1, 1] (``reach_features``). The frame is left out on purpose: the task is defined on the
centroids and targets alone, so an MlpPolicy on 4K numbers learns it in minutes where a
CnnPolicy on 64x64 frames needs far more steps, and a policy that never sees pixels cannot
exploit the generator's rendering quirks; the same numbers exist in the twin, so a policy
trained in the learned env runs there unchanged.

Action: the policy's Box(-1, 1) action is multiplied by ``move_scale(world, max_step_px)``
so that an action of 1 moves an object ``max_step_px`` pixels (see
``agents.rl.config.MAX_STEP_PX``: within the motion the model was trained on).

Each transform comes as a Gymnasium wrapper (single environments, SB3's ``check_env``) and as
an SB3 ``VecEnvWrapper`` (the batched learned VecEnv, the twin's DummyVecEnv); both call the
same functions.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

FEATURE_KEYS = ("centroids", "target")
"""Observation entries the policy sees, in this order."""


def world_of(env: Any) -> Any:
    """Find the object holding an lcvg environment's ``action_ranges`` and ``resolution``.

    Accepts a learned env (single, vector, SB3 VecEnv, wrapped) or a twin (single or inside a
    vector env); raises TypeError naming anything else.
    """
    seen: list[Any] = []
    candidate = env
    for _ in range(16):
        if candidate is None or any(candidate is s for s in seen):
            break
        seen.append(candidate)
        core = getattr(candidate, "core", None)
        if core is not None and hasattr(core, "action_ranges"):
            return core
        if hasattr(candidate, "action_ranges") and hasattr(candidate, "resolution"):
            return candidate
        envs = getattr(candidate, "envs", None)  # DummyVecEnv, SyncVectorEnv
        if envs:
            candidate = envs[0]
            continue
        candidate = getattr(candidate, "venv", None) or getattr(candidate, "env", None)
    raise TypeError(f"not an lcvg environment (no action_ranges found): {type(env).__name__}")


def feature_space(num_objects: int) -> gym.spaces.Box:
    """Box(-1, 1, (4K,), float32): the policy's observation space for K objects."""
    return gym.spaces.Box(-1.0, 1.0, (4 * int(num_objects),), np.float32)


def reach_features(observation: Any) -> np.ndarray:
    """Turn a Dict observation (single or batched) into float32 ``[centroids, target]``.

    Shapes: (2K,) and (2K,) -> (4K,), or batched (N, 2K) -> (N, 4K); clipped to [-1, 1].

    Raises:
        ValueError: an observation without the vector keys, naming what it holds.
    """
    if not isinstance(observation, dict) or any(k not in observation for k in FEATURE_KEYS):
        held = sorted(observation) if isinstance(observation, dict) else type(observation)
        raise ValueError(
            f"the reach policy's observation needs the keys {FEATURE_KEYS} of a Dict "
            f"observation, got {held}"
        )
    parts = [np.asarray(observation[key], dtype=np.float32) for key in FEATURE_KEYS]
    return np.clip(np.concatenate(parts, axis=-1), -1.0, 1.0)


def objects_of_features(space: gym.spaces.Space) -> int:
    """K of a ``feature_space`` (4K numbers: centroids then targets)."""
    return int(np.prod(space.shape or (0,))) // 4


def num_objects_of(space: gym.spaces.Space) -> int:
    """K of a reach Dict observation space (its ``centroids`` entry is (2K,))."""
    if not isinstance(space, gym.spaces.Dict) or "centroids" not in space.spaces:
        raise ValueError(f"expected a Dict observation space with 'centroids', got {space}")
    shape = space.spaces["centroids"].shape or (0,)
    return int(np.prod(shape)) // 2


def move_scale(world: Any, max_step_px: float) -> float:
    """Factor from the policy's action to the environment's for moves of ``max_step_px``.

    An environment action of 1 moves an object ``max_translation * W / 2`` pixels; the factor
    is ``max_step_px`` over that, capped at 1 (the environment's whole range).
    """
    if getattr(world, "control", "position") != "position":
        raise ValueError(f"the reach agents drive control='position', got {world.control!r}")
    full_px = world.action_ranges.max_translation * world.resolution[1] / 2.0
    return float(min(1.0, float(max_step_px) / full_px))


class ReachObservation(gym.ObservationWrapper):
    """A reach env (Dict observation) seen as ``reach_features``: Box(-1, 1, (4K,))."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = feature_space(num_objects_of(env.observation_space))

    def observation(self, observation: Any) -> np.ndarray:
        """Return ``reach_features(observation)``."""
        return reach_features(observation)


class ScaledMoves(gym.ActionWrapper):
    """Actions in [-1, 1] moving objects at most ``max_step_px`` pixels a step."""

    def __init__(self, env: gym.Env, max_step_px: float) -> None:
        super().__init__(env)
        self.scale = move_scale(world_of(env), max_step_px)

    def action(self, action: Any) -> np.ndarray:
        """Return the environment's action: the clipped action times ``scale``."""
        return (np.clip(np.asarray(action, np.float32), -1.0, 1.0) * self.scale).astype(
            np.float32
        )


class VecReachObservation(VecEnvWrapper):
    """SB3 VecEnv version of ``ReachObservation`` (terminal observations included)."""

    def __init__(self, venv: VecEnv) -> None:
        space = feature_space(num_objects_of(venv.observation_space))
        super().__init__(venv, observation_space=space)

    def reset(self) -> np.ndarray:
        """Reset and return the batched features."""
        return reach_features(self.venv.reset())

    def step_wait(self) -> Any:
        """Step and turn every observation (and terminal observation) into features."""
        obs, rewards, dones, infos = self.venv.step_wait()
        for info in infos:
            if "terminal_observation" in info:
                info["terminal_observation"] = reach_features(info["terminal_observation"])
        return reach_features(obs), rewards, dones, infos


class VecScaledMoves(VecEnvWrapper):
    """SB3 VecEnv version of ``ScaledMoves``."""

    def __init__(self, venv: VecEnv, max_step_px: float) -> None:
        super().__init__(venv)
        self.scale = move_scale(world_of(venv), max_step_px)

    def step_async(self, actions: np.ndarray) -> None:
        """Pass the clipped, scaled actions on."""
        scaled = np.clip(np.asarray(actions, np.float32), -1.0, 1.0) * self.scale
        self.venv.step_async(scaled.astype(np.float32))

    def reset(self) -> Any:
        """Reset the wrapped VecEnv."""
        return self.venv.reset()

    def step_wait(self) -> Any:
        """Step the wrapped VecEnv."""
        return self.venv.step_wait()
