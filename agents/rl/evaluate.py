"""Evaluation episodes of a reach policy, summarised as one JSON-ready dict.

``evaluate(config)`` (``lcvg-rl eval``) and ``run_episodes(make_policy, ...)`` (also used by
training's periodic evaluation) run one episode per environment of a vector env
(``agents.rl.envs.make_eval_vector``), in batches, episode i seeded ``seed + i``; what the
environments do after their first episode ends is ignored.

Summary keys: ``episodes``; ``success_rate`` (the environment's own success: mask centroids on
target); ``mean_final_distance_px`` (mean over objects of the last step's centroid-to-target
distance, averaged over the episodes that ended with every object's mask present; None when
none did); ``lost_rate`` (episodes that ended with an object's mask lost, ``present`` False);
``mean_episode_length``; for learned ids ``frame_confirmed_success_rate`` (successes whose
last frame M confirms, ``agents.rl.frame_backed``: at most ``success_rate``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from agents.rl.config import EvalConfig
from agents.rl.envs import is_twin, make_eval_vector
from agents.rl.policies import load_policy, saved_objects

PolicyFactory = Callable[[Any], Any]
"""Builds a policy for a given vector env (its action layout and size)."""


def run_episodes(
    make_policy: PolicyFactory,
    env_id: str,
    episodes: int,
    seed: int = 0,
    batch: int = 32,
    **env_kwargs: Any,
) -> dict[str, Any]:
    """Run ``episodes`` episodes of ``make_policy(env)`` in ``env_id``; returns the summary.

    ``env_kwargs``: as ``make_eval_vector`` (device, cover, tracking, checkpoint, ...).
    """
    if episodes < 1 or batch < 1:
        raise ValueError(f"episodes and batch must be >= 1, got {episodes} and {batch}")
    learned = not is_twin(env_id)
    rows: list[dict[str, Any]] = []
    for start in range(0, episodes, batch):
        n = min(batch, episodes - start)
        env = make_eval_vector(env_id, n, **env_kwargs)
        try:
            rows += _batch_of_episodes(env, make_policy(env), seed + start, learned)
        finally:
            env.close()
    return summarise(rows, learned)


def _batch_of_episodes(env: Any, policy: Any, seed: int, learned: bool) -> list[dict[str, Any]]:
    """One episode per environment of ``env``; a dict of outcomes per episode."""
    n = env.num_envs
    obs, _ = env.reset(seed=seed)
    done = np.zeros(n, dtype=bool)
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    state = None
    while not done.all():
        actions, state = policy.predict(obs, state, deterministic=True)
        obs, _, terminated, truncated, info = env.step(actions)
        ended = (np.asarray(terminated) | np.asarray(truncated)) & ~done
        for i in np.flatnonzero(ended):
            present = np.asarray(info["present"][i], dtype=bool)
            success = bool(terminated[i]) and bool(info["is_success"][i])
            rows[i] = {
                "success": success,
                "lost": not bool(present.all()),
                "distance_px": float(np.mean(info["distance_px"][i])),
                "length": int(info["step"][i]),
            }
            if learned:
                rows[i]["frame_confirmed"] = success and bool(info["frame_backed"][i])
        done |= ended
    return rows


def summarise(rows: list[dict[str, Any]], learned: bool) -> dict[str, Any]:
    """Summarise per-episode outcomes (see the module docstring)."""
    kept = [row["distance_px"] for row in rows if not row["lost"]]
    out: dict[str, Any] = {
        "episodes": len(rows),
        "success_rate": _mean(row["success"] for row in rows),
        "mean_final_distance_px": round(float(np.mean(kept)), 3) if kept else None,
        "lost_rate": _mean(row["lost"] for row in rows),
        "mean_episode_length": _mean(row["length"] for row in rows),
    }
    if learned:
        out["frame_confirmed_success_rate"] = _mean(row["frame_confirmed"] for row in rows)
    return out


def _mean(values: Any) -> float:
    items = [float(v) for v in values]
    return round(sum(items) / len(items), 4) if items else math.nan


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Evaluate ``config.policy`` in ``config.env`` (``lcvg-rl eval``); the summary dict."""

    def make_policy(env: Any) -> Any:
        return load_policy(config.policy, env, seed=config.seed, max_step_px=config.max_step_px)

    env_kwargs: dict[str, Any] = {"max_episode_steps": config.max_episode_steps,
                                  "num_objects": config.num_objects or saved_objects(config.policy)}
    if not is_twin(config.env):
        env_kwargs.update(device=config.device, cover=config.agree_cover,
                          tracking=config.tracking, checkpoint=config.checkpoint,
                          start_frames=config.start_frames)
    summary = run_episodes(make_policy, config.env, config.episodes, config.seed, config.batch,
                           **env_kwargs)
    return {"env": config.env, "policy": config.policy, "seed": config.seed, **summary}
