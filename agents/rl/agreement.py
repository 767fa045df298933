"""How often the learned environment's frame-backed success agrees with the twin's.

``twin_agreement`` runs paired episodes, as ``agents.demo`` does: each episode starts from a
twin scene (``SpritesRealEnv``), the learned vector environment starts from that scene's first
frame with the same targets, the twin's objects are matched to the learned ones, and the
policy's actions (chosen from the learned observations) are applied in both. When a learned
episode ends, two verdicts are compared with the twin's success at that step: the learned
environment's claimed success (mask centroids on target) and its frame-backed success
(claimed, and M's mask of the frame covers every tracked mask: ``agents.rl.frame_backed``).
``agreement`` is the fraction of episodes where frame-backed success equals the
twin's; ``claimed_agreement`` the same for the plain claim.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from agents.rl.config import AGREE_COVER
from agents.rl.envs import make_eval_vector, reset_with_twins, twin_id
from agents.rl.evaluate import PolicyFactory


def twin_agreement(
    make_policy: PolicyFactory,
    env_id: str,
    episodes: int,
    seed: int = 0,
    cover: float = AGREE_COVER,
    **env_kwargs: Any,
) -> dict[str, Any]:
    """Paired episodes of ``make_policy(env)`` in ``env_id`` and its twin; agreement rates.

    Args:
        make_policy: builds the policy for the learned vector env (raw Dict observations).
        env_id: a learned reach id with a twin (``LCVG-Sprites-Reach-v0``).
        episodes: paired episodes, run side by side.
        seed: twin scene seeds ``seed + i``.
        cover: the frame-backed test's coverage (``FrameBackedReach``).
        **env_kwargs: as ``make_eval_vector`` (device, tracking, checkpoint, ...).

    Returns:
        ``episodes``, ``claimed_success_rate``, ``frame_backed_success_rate``,
        ``twin_success_rate``, ``agreement`` (frame-backed == twin), ``claimed_agreement``
        (claimed == twin).
    """
    env = make_eval_vector(env_id, episodes, cover=cover, **env_kwargs)
    core = env.unwrapped.core  # type: ignore[attr-defined]
    twins: list[Any] = [
        gym.make(twin_id(env_id), num_objects=core.num_objects, size=core.resolution[0]).unwrapped
        for _ in range(episodes)
    ]
    obs, _ = reset_with_twins(env, twins, seed)
    policy = make_policy(env)
    done = np.zeros(episodes, dtype=bool)
    claimed = np.zeros(episodes, dtype=bool)
    backed = np.zeros(episodes, dtype=bool)
    real = np.zeros(episodes, dtype=bool)
    while not done.all():
        actions, _ = policy.predict(obs, deterministic=True)
        obs, _, terminated, truncated, info = env.step(actions)
        twin_success = np.array([
            bool(twin.step(actions[i])[4]["is_success"]) if not done[i] else False
            for i, twin in enumerate(twins)
        ])
        ended = (terminated | truncated) & ~done
        claimed[ended] = info["claimed_success"][ended]
        backed[ended] = info["claimed_success"][ended] & info["frame_backed"][ended]
        real[ended] = twin_success[ended]
        done |= ended
    env.close()
    return {
        "episodes": episodes,
        "claimed_success_rate": float(claimed.mean()),
        "frame_backed_success_rate": float(backed.mean()),
        "twin_success_rate": float(real.mean()),
        "agreement": float((backed == real).mean()),
        "claimed_agreement": float((claimed == real).mean()),
    }
