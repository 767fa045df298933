"""Scripted policies for the lcvg environments, with stable-baselines3's ``predict`` signature.

``policy.predict(observation, state=None, episode_start=None, deterministic=True)`` returns
``(actions, state)`` like an SB3 model, so the same evaluation code (e.g.
``stable_baselines3.common.evaluation.evaluate_policy``) runs scripted and learned agents.
Observations may be single (as ``gymnasium.Env.step`` returns them) or batched (as vector
environments return them); the actions come back with the same batching.

- ``ReachPolicy``: proportional feedback on the mask centroid: move each object by
  ``gain * (target - centroid)``, clipped to the action range. Needs ``"target"`` and either
  ``"centroids"`` or ``"mask"`` in a Dict observation (``LCVG-Sprites-Reach-v0`` has them).
- ``FollowPathPolicy``: drive the objects through a list of waypoints (the waypoint index is
  the recurrent ``state``; ``episode_start`` rewinds it).
- ``RandomPolicy``: uniform random actions from its own seeded generator.

They share ``Policy``: its ``predict`` is SB3's signature, each policy implements ``act``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from lcvg_env import control as ctl
from lcvg_env.spaces import PARAMS_PER_OBJECT, ActionRanges


class Policy:
    """Base class: stable-baselines3's ``predict`` signature, answered by ``act``.

    ``deterministic`` is accepted for SB3's signature; the policies here ignore it (the
    scripted ones are deterministic, ``RandomPolicy`` is random either way).
    """

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """Actions for ``observation`` (single or batched); returns ``(actions, state)``."""
        return self.act(observation, state, episode_start)

    def act(
        self, observation: Any, state: Any, episode_start: np.ndarray | None
    ) -> tuple[np.ndarray, Any]:
        """``predict`` without ``deterministic``; subclasses implement it."""
        raise NotImplementedError


class ScriptedPolicy(Policy):
    """Base class: the action layout of an lcvg environment and SB3-style ``predict``.

    Args:
        num_objects: K, objects controlled by the action.
        control: "position" (P = 2) or "affine" (P = 6; the policy only translates).
        action_ranges: the environment's ``ActionRanges`` (to turn motions into actions).
    """

    def __init__(
        self,
        num_objects: int = 1,
        control: str = "position",
        action_ranges: ActionRanges | None = None,
    ) -> None:
        if control not in PARAMS_PER_OBJECT:
            raise ValueError(
                f"scripted policies drive 'position' or 'affine' control, got {control!r}"
            )
        if isinstance(num_objects, bool) or not isinstance(num_objects, int) or num_objects < 1:
            raise ValueError(f"num_objects must be an int >= 1, got {num_objects!r}")
        self.num_objects = num_objects
        self.control = control
        self.ranges = action_ranges or ActionRanges()

    @classmethod
    def from_env(cls, env: Any, **kwargs: Any) -> ScriptedPolicy:
        """Build a policy for an lcvg environment (single, vector, SB3 or wrapped)."""
        core = _core_of(env)
        return cls(
            num_objects=core.num_objects,
            control=core.control,
            action_ranges=core.action_ranges,
            **kwargs,
        )

    def motion_to_action(self, motion: np.ndarray) -> np.ndarray:
        """Object translations (N, K, 2) in normalised units -> actions (N, K*P) in [-1, 1]."""
        n = motion.shape[0]
        p = PARAMS_PER_OBJECT[self.control]
        action = np.zeros((n, self.num_objects, p), dtype=np.float32)
        action[..., :2] = motion / self.ranges.max_translation
        return np.clip(action, -1.0, 1.0).reshape(n, self.num_objects * p)


class ReachPolicy(ScriptedPolicy):
    """Move each object's mask centroid toward its target (proportional feedback).

    Args:
        gain: fraction of the remaining offset commanded per step (before clipping); 1 asks
            for the whole offset, which the action range then limits.
        num_objects, control, action_ranges: as for ``ScriptedPolicy``.
    """

    def __init__(self, gain: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not float(gain) > 0:
            raise ValueError(f"gain must be > 0, got {gain!r}")
        self.gain = float(gain)

    def act(
        self, observation: Any, state: Any, episode_start: np.ndarray | None
    ) -> tuple[np.ndarray, Any]:
        """Return actions (K*P,) or (N, K*P) for a Dict observation.

        The observation holds ``target`` and ``centroids`` (or ``mask``).
        """
        if not isinstance(observation, dict) or "target" not in observation:
            raise ValueError(
                "ReachPolicy needs a Dict observation with 'target' and 'centroids' (or "
                f"'mask'), got {_describe(observation)}"
            )
        target = np.asarray(observation["target"], dtype=np.float32)
        single = target.ndim == 1
        target = target.reshape(-1, self.num_objects, 2)
        centroids = self.centroids(observation, single).reshape(-1, self.num_objects, 2)
        return self.steer(target, centroids, single), state

    def steer(self, goal: np.ndarray, centroids: np.ndarray, single: bool) -> np.ndarray:
        """Actions moving ``centroids`` (N, K, 2) by ``gain`` of their offset to ``goal``.

        Returns (K*P,) for a single observation (N = 1), else (N, K*P).
        """
        action = self.motion_to_action(self.gain * (goal - centroids))
        return action[0] if single else action

    def centroids(self, observation: dict[str, Any], single: bool) -> np.ndarray:
        """Return object centroids (N, 2K) from ``centroids``, else from ``mask``.

        From the mask image, the objects are its K largest components, largest first.
        """
        if "centroids" in observation:
            centroids = np.asarray(observation["centroids"], dtype=np.float32)
            return centroids.reshape(-1, 2 * self.num_objects)
        if "mask" not in observation:
            raise ValueError(
                "ReachPolicy needs 'centroids' or 'mask' in the observation, got keys "
                f"{sorted(observation)}"
            )
        mask = np.asarray(observation["mask"])
        if single:
            mask = mask[None]
        masks = torch.from_numpy((mask[..., 0] > 127).astype(np.float32))[:, None]  # (N,1,H,W)
        objects = ctl.object_masks(masks, self.num_objects)
        return ctl.mask_centroids(objects).reshape(-1, 2 * self.num_objects).numpy()


class FollowPathPolicy(ReachPolicy):
    """Steer every object through ``waypoints`` in order (then hold the last one, or loop).

    Args:
        waypoints: (M, 2) normalised (x, y) shared by all objects, or (K, M, 2) per object.
        radius: distance (normalised units) at which a waypoint counts as reached and the next
            one becomes the goal (an object's index advances independently of the others).
        loop: start again at the first waypoint after the last.
        gain, num_objects, control, action_ranges: as for ``ReachPolicy``.

    ``state`` is the (N, K) int array of current waypoint indices (None at the start);
    ``episode_start`` (N,) bool rewinds the marked environments to the first waypoint.
    Observations need ``centroids`` or ``mask``.
    """

    def __init__(
        self, waypoints: Any, radius: float = 0.1, loop: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        points = np.asarray(waypoints, dtype=np.float32)
        if points.ndim == 2:
            points = np.broadcast_to(points, (self.num_objects, *points.shape))
        if points.ndim != 3 or points.shape[0] != self.num_objects or points.shape[2] != 2:
            raise ValueError(
                f"waypoints must be (M, 2) or ({self.num_objects}, M, 2), got shape "
                f"{np.asarray(waypoints).shape}"
            )
        if points.shape[1] == 0 or not np.all(np.isfinite(points)):
            raise ValueError("waypoints must hold at least one finite point")
        self.waypoints = np.ascontiguousarray(points)  # (K, M, 2)
        self.radius = float(radius)
        self.loop = bool(loop)

    def act(
        self, observation: Any, state: Any, episode_start: np.ndarray | None
    ) -> tuple[np.ndarray, Any]:
        """Actions toward each object's current waypoint; returns ``(actions, indices)``."""
        if not isinstance(observation, dict):
            raise ValueError(
                "FollowPathPolicy needs a Dict observation with 'centroids' or 'mask', got "
                f"{_describe(observation)}"
            )
        probe = observation.get("centroids", observation.get("mask"))
        single = probe is not None and (
            np.asarray(probe).ndim == (1 if "centroids" in observation else 3)
        )
        centroids = self.centroids(observation, single).reshape(-1, self.num_objects, 2)
        n, k = centroids.shape[:2]
        m = self.waypoints.shape[1]
        index = np.zeros((n, k), dtype=np.int64) if state is None else np.array(state, np.int64)
        if index.shape != (n, k):
            raise ValueError(f"state must be ({n}, {k}) waypoint indices, got {index.shape}")
        if episode_start is not None:
            index[np.asarray(episode_start, dtype=bool).reshape(n)] = 0
        objects = np.arange(k)
        for _ in range(m):  # skip every waypoint already within reach
            goal = self.waypoints[objects[None, :], index]  # (N, K, 2)
            reached = np.linalg.norm(goal - centroids, axis=-1) <= self.radius
            advance = reached & ((index < m - 1) | self.loop)
            if not advance.any():
                break
            index = np.where(advance, (index + 1) % m, index)
        goal = self.waypoints[objects[None, :], index]
        return self.steer(goal, centroids, single), index


class RandomPolicy(Policy):
    """Uniformly random actions of ``action_space`` from a generator seeded with ``seed``.

    ``predict`` samples for single observations, or one action per row of a batch whose size
    ``num_envs`` gives (default 1 = single). ``deterministic`` is ignored: random is random.
    """

    def __init__(self, action_space: gym.Space, seed: int | None = None, num_envs: int = 1):
        self.action_space = action_space
        self.action_space.seed(seed)
        self.num_envs = int(num_envs)

    def act(
        self, observation: Any, state: Any, episode_start: np.ndarray | None
    ) -> tuple[np.ndarray, Any]:
        """Sample a random action (or num_envs of them); returns ``(actions, state)``."""
        if self.num_envs == 1:
            return np.asarray(self.action_space.sample()), state
        return np.stack([self.action_space.sample() for _ in range(self.num_envs)]), state


def _core_of(env: Any) -> Any:
    """Find the ``LCVGCore`` behind an lcvg environment (through wrappers)."""
    for candidate in (env, getattr(env, "unwrapped", None), getattr(env, "venv", None)):
        core = getattr(candidate, "core", None)
        if core is not None:
            return core
    raise TypeError(f"not an lcvg environment: {type(env).__name__}")


def _describe(observation: Any) -> str:
    if isinstance(observation, dict):
        return f"dict with keys {sorted(observation)}"
    shape = getattr(observation, "shape", None)
    return f"{type(observation).__name__}" + (f" of shape {shape}" if shape is not None else "")
