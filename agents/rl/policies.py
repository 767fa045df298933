"""Policies ``lcvg-rl eval`` runs: saved SB3 models and the scripted ones, one interface.

Every policy here takes the environment's raw observation (a Dict, single or batched) and
returns the environment's action, with SB3's ``predict`` signature (as ``agents.scripted``).
An SB3 model trained by ``lcvg-rl train`` is wrapped in ``SB3ReachPolicy``, which applies the
same view as the training wrappers (``agents.rl.wrappers``): features in, scaled moves out.
So one policy runs unchanged in a learned environment and in its twin.

``load_policy(spec, env)`` reads a spec: ``scripted:reach``, ``scripted:random`` or the path
of an SB3 ``.zip`` (PPO or SAC, told apart by the file itself).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.save_util import json_to_data

from agents.rl.config import MAX_STEP_PX, TrainConfig
from agents.rl.wrappers import move_scale, objects_of_features, reach_features, world_of
from agents.scripted import RandomPolicy, ReachPolicy

SCRIPTED = ("scripted:reach", "scripted:random")
"""Policy specs of the scripted policies (``agents.scripted``)."""
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "sac": SAC}
"""SB3 classes by ``TrainConfig.algo``."""


class SB3ReachPolicy:
    """An SB3 model seen through the training view of a reach environment.

    Args:
        model: a PPO or SAC model trained on ``reach_features`` observations.
        scale: environment action per policy action (``agents.rl.wrappers.move_scale``).
    """

    def __init__(self, model: BaseAlgorithm, scale: float) -> None:
        self.model = model
        self.scale = float(scale)

    def predict(self, observation: Any, state: Any = None,
                episode_start: np.ndarray | None = None, deterministic: bool = True
                ) -> tuple[np.ndarray, Any]:
        """Environment actions for a raw Dict observation (single or batched)."""
        actions, _ = self.model.predict(reach_features(observation), deterministic=deterministic)
        scaled = np.clip(np.asarray(actions, np.float32), -1.0, 1.0) * self.scale
        return scaled.astype(np.float32), state


def algorithm_of(path: str | Path) -> type[BaseAlgorithm]:
    """PPO or SAC: the class that saved the SB3 zip ``path`` (told by its saved parameters).

    Raises:
        ValueError: the file is no SB3 zip of either, naming it.
    """
    return _algorithm_in(_saved_data(path), path)


def _saved_data(path: str | Path) -> dict[str, Any]:
    """Read the JSON ``data`` entry of an SB3 zip (its parameters; nothing deserialised)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return dict(json.loads(archive.read("data")))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a stable-baselines3 model zip ({error})") from None


def _algorithm_in(data: dict[str, Any], path: str | Path) -> type[BaseAlgorithm]:
    for cls, marker in ((PPO, "clip_range"), (SAC, "target_entropy")):
        if marker in data:
            return cls
    raise ValueError(f"{path} holds neither a PPO nor a SAC model (lcvg-rl runs those)")


def saved_max_step_px(path: str | Path) -> float:
    """``max_step_px`` of the run that saved the policy ``path`` (its folder's config.json)."""
    config = Path(path).resolve().parent / "config.json"
    if config.is_file():
        return TrainConfig.load(config).max_step_px
    return MAX_STEP_PX


def saved_objects(spec: str) -> int:
    """K a saved SB3 policy was trained for (its observation holds 4K numbers); 0 otherwise.

    Scripted policies adapt to any K, so they give 0 (keep the environment's K).
    """
    path = Path(spec)
    if spec.startswith("scripted:") or not path.is_file():
        return 0
    data = _saved_data(path)
    _algorithm_in(data, path)  # the same errors as loading it
    # only the observation space is unpickled: the networks and optimiser stay in the zip
    space = json_to_data(json.dumps({"observation_space": data["observation_space"]}))
    return objects_of_features(space["observation_space"])


def load_policy(
    spec: str, env: Any, seed: int = 0, max_step_px: float = 0.0, device: str = "cpu"
) -> Any:
    """Load the policy ``spec`` for the environments of ``env`` (a vector env of a reach id).

    Args:
        spec: ``scripted:reach``, ``scripted:random`` or a path to an SB3 ``.zip``.
        env: the (vector) environment the policy will act in: its action layout and size.
        seed: seed of the random policy.
        max_step_px: SB3 policies: pixels per unit action; 0 reads the run's config.json.
        device: device of the SB3 model.

    Raises:
        ValueError: an unknown spec or missing file, naming it.
    """
    world = world_of(env)
    if spec == "scripted:reach":
        return ReachPolicy(num_objects=world.num_objects, control=world.control,
                           action_ranges=world.action_ranges)
    if spec == "scripted:random":
        return RandomPolicy(env.single_action_space, seed=seed, num_envs=env.num_envs)
    path = Path(spec)
    if spec.startswith("scripted:") or not path.is_file():
        raise ValueError(
            f"policy must be one of {SCRIPTED} or an SB3 .zip file, got {spec!r}"
            + ("" if spec.startswith("scripted:") else " (no such file)")
        )
    model = algorithm_of(path).load(path, device=device)
    step_px = max_step_px or saved_max_step_px(path)
    return SB3ReachPolicy(model, move_scale(world, step_px))
