"""Tasks: rewards and episode ends on top of the simulator's dynamics.

A task sees, after every reset and step, the tracked objects' mask centroids (normalised
(x, y), the simulator's ``centroids``) and whether each object's mask is present; it returns
rewards and terminations for all N environments at once (numpy, batch first). Truncation
(``max_episode_steps``) belongs to the environments, not to the tasks.

- ``FreeTask`` ("free"): the learned simulator as it is; reward 0, never terminates.
- ``ReachTask`` ("reach"): one target position per controlled object, drawn at reset; reward =
  progress of each present object's mask centroid toward its target (decrease of the distance,
  in normalised units, summed over objects) plus ``success_bonus`` on success; success (every
  object present and within ``success_radius`` of its target) terminates the episode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

TASKS = ("free", "reach")
"""Names accepted by ``make_task``."""


class Task:
    """Base class: a free simulator (reward 0, never terminates).

    Args:
        num_envs: N.
        num_objects: K.
        resolution: (H, W) of the frames, to report distances in pixels.
    """

    name = "free"
    observation_keys: tuple[str, ...] = ()
    """Observation entries this task can provide (see ``observation``)."""

    def __init__(self, num_envs: int, num_objects: int, resolution: tuple[int, int]) -> None:
        self.num_envs = int(num_envs)
        self.num_objects = int(num_objects)
        self.resolution = (int(resolution[0]), int(resolution[1]))

    def reset(
        self,
        indices: np.ndarray,
        centroids: np.ndarray,
        present: np.ndarray,
        rngs: Sequence[np.random.Generator],
        options: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Start episodes in ``indices`` (n,): ``start`` each of them, in order.

        Given their first centroids (n, K, 2) and presence (n, K); ``rngs[j]`` is the
        generator of environment ``indices[j]``; ``options[j]`` its reset options.
        """
        for j, index in enumerate(np.asarray(indices).tolist()):
            option = None if options is None else options[j]
            self.start(index, centroids[j], present[j], rngs[j], option or {})

    def start(
        self, index: int, centroids: np.ndarray, present: np.ndarray,
        rng: np.random.Generator, option: Mapping[str, Any],
    ) -> None:
        """Start environment ``index``'s episode (the free task keeps no episode state).

        Given its first centroids (K, 2), presence (K,), generator and reset options.
        """

    def step(self, centroids: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rewards (N,) float64 and terminations (N,) bool after a step of all N environments."""
        n = centroids.shape[0]
        return np.zeros(n, dtype=np.float64), np.zeros(n, dtype=bool)

    def info(self, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Batched task information for ``indices`` (default all): name -> (n, ...) array."""
        return {}

    def observation(self, key: str, indices: np.ndarray | None = None) -> np.ndarray:
        """Batched observation entry ``key`` (one of ``observation_keys``) for ``indices``."""
        raise KeyError(f"task {self.name!r} provides no observation {key!r}")


FreeTask = Task


class ReachTask(Task):
    """Move each controlled object's mask centroid to its target.

    Args:
        num_envs, num_objects, resolution: as for ``Task``.
        success_radius: distance (normalised units) under which an object has reached its
            target (0.1 = 3.2 pixels at 64x64).
        success_radius_px: the same in pixels of the frame's width; when given, it replaces
            ``success_radius``.
        target_range: targets are drawn uniformly in [-target_range, target_range]^2.
        min_distance: targets are drawn at least this far from the object's first centroid
            (up to 100 tries, then the farthest try is kept).
        success_bonus: reward added on the step of success.
        reward_scale: multiplies the progress term.
    """

    name = "reach"
    observation_keys = ("target",)

    def __init__(
        self,
        num_envs: int,
        num_objects: int,
        resolution: tuple[int, int],
        success_radius: float = 0.1,
        target_range: float = 0.7,
        min_distance: float = 0.4,
        success_bonus: float = 1.0,
        reward_scale: float = 1.0,
        success_radius_px: float | None = None,
    ) -> None:
        super().__init__(num_envs, num_objects, resolution)
        if success_radius_px is not None:
            if isinstance(success_radius_px, bool) or not isinstance(success_radius_px,
                                                                     int | float):
                raise TypeError(f"ReachTask.success_radius_px must be a float, got "
                                f"{success_radius_px!r}")
            success_radius = 2.0 * success_radius_px / self.resolution[1]
        checks = {
            "success_radius": (success_radius, 0.0, 4.0),
            "target_range": (target_range, 0.0, 1.0),
            "min_distance": (min_distance, -1.0, 2.0),
        }
        for name, (value, low, high) in checks.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"ReachTask.{name} must be a float, got {value!r}")
            if not low < value <= high:
                raise ValueError(f"ReachTask.{name} must be in ({low}, {high}], got {value!r}")
        self.success_radius = float(success_radius)
        self.target_range = float(target_range)
        self.min_distance = float(min_distance)
        self.success_bonus = float(success_bonus)
        self.reward_scale = float(reward_scale)
        k = self.num_objects
        self.targets = np.zeros((self.num_envs, k, 2), dtype=np.float32)
        self.distance = np.zeros((self.num_envs, k), dtype=np.float32)
        self.success = np.zeros(self.num_envs, dtype=bool)
        self.centroids = np.zeros((self.num_envs, k, 2), dtype=np.float32)
        self.present = np.zeros((self.num_envs, k), dtype=bool)

    def start(
        self, index: int, centroids: np.ndarray, present: np.ndarray,
        rng: np.random.Generator, option: Mapping[str, Any],
    ) -> None:
        """Draw the target (or take ``option["target"]``, (K, 2) normalised) of ``index``."""
        given = option.get("target")
        if given is not None:
            target = np.asarray(given, dtype=np.float32)
            if target.shape not in ((self.num_objects, 2), (2 * self.num_objects,)):
                raise ValueError(
                    f'reset(options={{"target": ...}}) must be ({self.num_objects}, 2) '
                    f"normalised (x, y), got shape {target.shape}"
                )
            target = target.reshape(self.num_objects, 2)
            if not np.all(np.isfinite(target)) or np.any(np.abs(target) > 1):
                raise ValueError(f"targets must be finite and in [-1, 1], got {target.tolist()}")
        else:
            target = self._draw(rng, centroids)
        self.targets[index] = target
        self.distance[index] = np.linalg.norm(centroids - self.targets[index], axis=-1)
        self.centroids[index] = centroids
        self.present[index] = present
        self.success[index] = False

    def _draw(self, rng: np.random.Generator, centroids: np.ndarray) -> np.ndarray:
        """(K, 2) targets at least ``min_distance`` from the centroids (K, 2) where possible."""
        r = self.target_range
        tries = rng.uniform(-r, r, size=(100, self.num_objects, 2)).astype(np.float32)
        far = np.linalg.norm(tries - centroids[None], axis=-1)  # (100, K)
        out = np.empty((self.num_objects, 2), dtype=np.float32)
        for k in range(self.num_objects):
            ok = np.flatnonzero(far[:, k] >= self.min_distance)
            out[k] = tries[ok[0] if ok.size else int(far[:, k].argmax()), k]
        return out

    def step(self, centroids: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reward = reward_scale * summed progress (+ bonus on success).

        Progress counts only objects whose mask is present before and after the step: a lost
        object's position is a guess (its last centroid moved by the commanded motion), and an
        object found again must not be rewarded for the jump.
        """
        distance = np.linalg.norm(centroids - self.targets, axis=-1).astype(np.float32)
        seen = present & self.present
        progress = np.where(seen, self.distance - distance, 0.0).sum(axis=-1)
        success = np.all(present & (distance <= self.success_radius), axis=-1)
        self.distance = distance
        self.centroids = centroids.astype(np.float32, copy=True)
        self.present = present.copy()
        self.success = success
        reward = self.reward_scale * progress.astype(np.float64) + self.success_bonus * success
        return reward, success.copy()

    def info(self, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Return the reach information of ``indices`` (default all).

        ``target`` (n, K, 2) normalised, ``distance`` (n, K) normalised and ``distance_px``
        (n, K) in pixels between each object's tracked centroid and its target (a guess while
        the object's mask is empty: check the environment's ``present`` info), ``is_success``
        (n,) bool.
        """
        idx = slice(None) if indices is None else np.asarray(indices)
        return {
            "target": self.targets[idx].copy(),
            "distance": self.distance[idx].copy(),
            "distance_px": self._pixels(idx),
            "is_success": self.success[idx].copy(),
        }

    def _pixels(self, idx: Any) -> np.ndarray:
        """Distance of each object's last centroid to its target in pixels, (n, K)."""
        h, w = self.resolution
        offset = (self.centroids[idx] - self.targets[idx]) * np.array([w / 2, h / 2], np.float32)
        return np.linalg.norm(offset, axis=-1).astype(np.float32)

    def observation(self, key: str, indices: np.ndarray | None = None) -> np.ndarray:
        """``"target"``: (n, 2K) float32 targets, (x0, y0, x1, y1, ...)."""
        if key != "target":
            return super().observation(key, indices)
        idx = slice(None) if indices is None else np.asarray(indices)
        return self.targets[idx].reshape(-1, 2 * self.num_objects).copy()


def make_task(
    task: str | Task,
    num_envs: int,
    num_objects: int,
    resolution: tuple[int, int],
    kwargs: Mapping[str, Any] | None = None,
) -> Task:
    """Make a task by name ("free" or "reach", with ``kwargs``), or return ``task``."""
    if isinstance(task, Task):
        if task.num_envs != num_envs or task.num_objects != num_objects:
            raise ValueError(
                f"task was built for {task.num_envs} envs x {task.num_objects} objects, the "
                f"environment has {num_envs} x {num_objects}"
            )
        return task
    kwargs = dict(kwargs or {})
    if task == "free":
        if kwargs:
            raise ValueError(f"task 'free' takes no task_kwargs, got {sorted(kwargs)}")
        return Task(num_envs, num_objects, resolution)
    if task == "reach":
        return ReachTask(num_envs, num_objects, resolution, **kwargs)
    raise ValueError(f"task must be one of {TASKS} or a Task, got {task!r}")
