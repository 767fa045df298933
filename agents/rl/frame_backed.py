"""Rewards that the frames back: reach success only where M sees the object in the frame.

With carried tracking (the sprites ids' default) the simulator's object masks go exactly where
the actions send them and M is not run after reset, so a mask can reach its target while the
generator left the object behind: a success the frame does not show. ``FrameBackedReach`` is
the reach task (``lcvg_env.tasks.ReachTask``) with one more test after every reset and step:
it runs the environment's own mask network M on the generated frame and checks that M's
binarised mask covers at least ``cover`` of each tracked object mask (``frame_agreement``).
With ``enforce=True`` a success counts (terminates, earns the bonus) only where that holds.

Why a task and not a Gymnasium wrapper: the batched environments reset an episode inside the
same step that ends it (``lcvg_env.sb3.LCVGVecEnv``), so a wrapper outside would see the next
episode's masks, and could not undo the termination. The task runs inside the step, right
after the simulator's, in every adapter (``LCVGEnv``, ``LCVGVectorEnv``, ``LCVGVecEnv``); it
is passed as ``task=`` (a ``Task`` instance is accepted by every lcvg environment) and reaches
M through the environment's public simulator: ``attach(simulator_of(env))``.

Infos gain ``frame_backed`` (bool: every tracked object mask agrees with M's mask of the
current frame) and ``claimed_success`` (the plain reach task's success, before the test).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from agents.rl.config import AGREE_COVER
from lcvg_env.tasks import ReachTask
from lcvg_env.tracking import agrees

__all__ = ["FrameBackedReach", "frame_agreement", "simulator_of"]


def simulator_of(env: Any) -> Any:
    """Return the batched ``Simulator`` behind a learned environment (single, vector, SB3).

    Raises:
        TypeError: for anything that has none (a twin, say), naming its type.
    """
    for candidate in (env, getattr(env, "unwrapped", None)):
        sim = getattr(candidate, "simulator", None)
        if sim is not None:
            return sim
        core = getattr(candidate, "core", None)
        if core is not None and getattr(core, "sim", None) is not None:
            return core.sim
    raise TypeError(f"not a learned lcvg environment (no simulator): {type(env).__name__}")


def frame_agreement(simulator: Any, cover: float = AGREE_COVER,
                    indices: np.ndarray | None = None) -> np.ndarray:
    """Which tracked object masks M's mask of the current frames confirms, bool (n, K).

    Runs the simulator's mask network on its frames (those of ``indices``, default all N),
    binarised at the simulator's threshold, and marks object k of environment i when the mask
    covers at least ``cover`` of the tracked mask ``objects[i, k]`` (an empty tracked mask is
    never confirmed): ``lcvg_env.tracking.agrees``, the simulator's own "anchored" test.
    """
    threshold = float(getattr(simulator, "threshold", 0.5))
    frames, objects = simulator.frames, simulator.objects
    if indices is not None:  # M on the frames asked for only (resets come a few at a time)
        rows = torch.as_tensor(np.asarray(indices), dtype=torch.long, device=frames.device)
        frames, objects = frames[rows], objects[rows]
    with torch.inference_mode():
        segmentation = simulator.model.binary_mask(frames, threshold)  # (n, 1, H, W)
        agree = agrees(objects.float(), segmentation.float(), cover)  # (n, K)
    return agree.cpu().numpy()


class FrameBackedReach(ReachTask):
    """``ReachTask`` whose success must be confirmed by M's mask of the generated frame.

    Args:
        num_envs, num_objects, resolution: as for ``ReachTask``.
        enforce: True: an unconfirmed success is no success (no bonus, no termination);
            False: only report ``frame_backed`` (the plain task's rewards and ends).
        cover: fraction of each tracked mask M's mask must cover (``frame_agreement``).
        **reach_kwargs: ``ReachTask``'s (success_radius, target_range, ...).

    Call ``attach(simulator)`` before the first step (``simulator_of(env)``).
    """

    def __init__(
        self,
        num_envs: int,
        num_objects: int,
        resolution: tuple[int, int],
        *,
        enforce: bool = True,
        cover: float = AGREE_COVER,
        **reach_kwargs: Any,
    ) -> None:
        super().__init__(num_envs, num_objects, resolution, **reach_kwargs)
        if not 0.0 < float(cover) <= 1.0:
            raise ValueError(f"cover must be in (0, 1], got {cover!r}")
        self.enforce = bool(enforce)
        self.cover = float(cover)
        self.simulator: Any = None
        self.backed = np.zeros(self.num_envs, dtype=bool)
        self.claimed = np.zeros(self.num_envs, dtype=bool)

    def attach(self, simulator: Any) -> FrameBackedReach:
        """Use ``simulator`` (the environment's, see ``simulator_of``) for the test."""
        if getattr(simulator, "num_envs", self.num_envs) != self.num_envs:
            raise ValueError(
                f"the simulator runs {simulator.num_envs} environments, this task "
                f"{self.num_envs}"
            )
        self.simulator = simulator
        return self

    def _agreement(self, indices: np.ndarray | None = None) -> np.ndarray:
        if self.simulator is None:
            raise RuntimeError(
                "FrameBackedReach has no simulator: call task.attach(simulator_of(env)) "
                "after making the environment"
            )
        return np.asarray(frame_agreement(self.simulator, self.cover, indices).all(axis=-1))

    def reset(self, indices: np.ndarray, centroids: np.ndarray, present: np.ndarray,
              rngs: Sequence[np.random.Generator],
              options: Sequence[Mapping[str, Any] | None] | None = None) -> None:
        """Start episodes as ``ReachTask.reset``, and test their first frames."""
        super().reset(indices, centroids, present, rngs, options)
        idx = np.asarray(indices)
        self.claimed[idx] = False
        if self.simulator is not None:  # an env resets once while it is being built
            self.backed[idx] = self._agreement(idx)

    def step(self, centroids: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``ReachTask.step``; with ``enforce``, success and bonus only where the frame backs it."""
        reward, success = super().step(centroids, present)
        self.backed = self._agreement()
        self.claimed = success.copy()
        if self.enforce:
            unbacked = success & ~self.backed
            reward = reward - self.success_bonus * unbacked
            success = success & self.backed
            self.success = success.copy()
        return reward, success.copy()

    def info(self, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``ReachTask.info`` plus ``frame_backed`` (n,) and ``claimed_success`` (n,) bool."""
        out = super().info(indices)
        idx = slice(None) if indices is None else np.asarray(indices)
        out["frame_backed"] = self.backed[idx].copy()
        out["claimed_success"] = self.claimed[idx].copy()
        return out
