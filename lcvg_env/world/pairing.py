"""Paired episodes: a learned environment and its ground-truth twin from the same first frame.

``paired_reset`` starts a twin (``SpritesRealEnv``) episode, gives its first frame (and its
reach targets) to a learned ``LCVGEnv``, and matches the two environments' objects so that
action row k moves the same object in both: run one policy in both and compare.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from lcvg_env.world.twin import SpritesRealEnv

__all__ = ["paired_reset"]


def paired_reset(
    learned: gym.Env,
    twin: gym.Env,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[tuple[Any, dict[str, Any]], tuple[Any, dict[str, Any]]]:
    """Reset a learned environment and its twin on the same scene, objects matched.

    1. ``twin.reset(seed=seed, options=options)`` draws the scene (``options`` as
       ``SpritesRealEnv.reset``: "scene", "target");
    2. ``learned.reset(seed=seed, options={"frame": the twin's first frame})``, plus
       ``"target"``: the twin's reach targets when the learned task is reach;
    3. ``twin.unwrapped.match_objects(learned centroids, targets=learned targets)`` picks and
       orders the twin's controlled objects to match the learned environment's (nearest
       centroids), and gives twin object k the learned object k's target, so both chase the
       same target with the same object.

    Args:
        learned: an ``lcvg_env.env.LCVGEnv`` (or a wrapper of one, e.g. from ``gym.make``).
        twin: a ``SpritesRealEnv`` (or a wrapper of one) with the same number of objects.
        seed: seed of both resets.
        options: the twin's reset options.

    Returns:
        ``((learned_obs, learned_info), (twin_obs, twin_info))``; the twin's are those of the
        unwrapped twin after matching.
    """
    real = twin.unwrapped
    if not isinstance(real, SpritesRealEnv):
        raise TypeError(f"twin must be a SpritesRealEnv, got {type(real).__name__}")
    sim = learned.unwrapped
    core = getattr(sim, "core", None)
    if core is None or not hasattr(core, "task"):
        raise TypeError(f"learned must be an LCVGEnv, got {type(sim).__name__}")
    if core.num_objects != real.num_objects:
        raise ValueError(
            f"the learned environment controls {core.num_objects} objects, the twin "
            f"{real.num_objects}"
        )
    _, twin_info = twin.reset(seed=seed, options=None if options is None else dict(options))
    reach = "target" in core.task.observation_keys
    learned_options: dict[str, Any] = {"frame": real.frame}
    if reach and "target" in twin_info:
        learned_options["target"] = np.asarray(twin_info["target"], dtype=np.float32)
    learned_obs, learned_info = learned.reset(seed=seed, options=learned_options)
    targets = learned_info.get("target") if reach else None
    real.match_objects(learned_info["centroids"], targets=targets,
                       present=np.asarray(learned_info["present"], bool))
    twin_obs, twin_info = real.observe()
    return (learned_obs, learned_info), (twin_obs, twin_info)
