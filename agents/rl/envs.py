"""Building the environments the agents train and are judged in.

- ``twin_id`` / ``learned_id``: the id pair of a learned environment and its ground-truth twin
  (``LCVG-Sprites-Reach-v0`` <-> ``LCVG-Sprites-Reach-Real-v0``).
- ``make_train_venv``: the SB3 VecEnv of a training run: the learned id's batched
  ``LCVGVecEnv`` (with ``FrameBackedReach``), or the twin's envs in SB3's ``DummyVecEnv``;
  both wrapped identically (``agents.rl.wrappers``) and in ``VecMonitor``.
- ``make_eval_vector``: a Gymnasium vector env for evaluation episodes (``LCVGVectorEnv`` for
  learned ids, ``SyncVectorEnv`` for twins; the default next-step autoreset, so an episode's
  last info is that of the step that ended it). Its observations are the raw Dict ones;
  policies bring their own view (``agents.rl.policies``).
- ``reset_with_twins``: a learned vector env reset from its twins' first frames, objects
  matched (the batched counterpart of ``lcvg_env.world.pairing.paired_reset``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

from agents.rl.config import AGREE_COVER, TrainConfig
from agents.rl.frame_backed import FrameBackedReach, simulator_of
from agents.rl.wrappers import VecReachObservation, VecScaledMoves
from lcvg_env.env import load_model
from lcvg_env.registration import register_envs
from lcvg_env.sb3 import LCVGVecEnv
from lcvg_env.vector import LCVGVectorEnv

REAL_TAG = "-Real"
"""What a twin id adds before its version suffix (``...-Reach-Real-v0``)."""


def _spec(env_id: str) -> gym.envs.registration.EnvSpec:
    register_envs()
    try:
        return gym.spec(env_id)
    except gym.error.Error as error:
        raise ValueError(f"unknown environment id {env_id!r} ({error})") from None


def is_twin(env_id: str) -> bool:
    """Whether ``env_id`` is a ground-truth twin id (no learned model behind it)."""
    return _spec(env_id).vector_entry_point is None and REAL_TAG + "-" in env_id


def twin_id(env_id: str) -> str:
    """Return the twin of a learned id (``X-v0`` -> ``X-Real-v0``); a twin id is its own.

    Raises:
        ValueError: no twin is registered for ``env_id`` (e.g. ``LCVG-BAIR-v0``).
    """
    if is_twin(env_id):
        return env_id
    stem, dash, version = env_id.rpartition("-")
    candidate = f"{stem}{REAL_TAG}{dash}{version}"
    register_envs()
    if candidate not in gym.registry:
        raise ValueError(f"{env_id!r} has no ground-truth twin (looked for {candidate!r})")
    return candidate


def learned_id(env_id: str) -> str:
    """Return the learned id of a twin id (``X-Real-v0`` -> ``X-v0``); a learned id is its own."""
    if not is_twin(env_id):
        _spec(env_id)
        return env_id
    candidate = env_id.replace(REAL_TAG + "-", "-")
    _spec(candidate)
    return candidate


def learned_kwargs(
    env_id: str,
    device: str = "auto",
    tracking: str = "",
    checkpoint: str = "",
    start_frames: str = "",
    max_episode_steps: int = 0,
) -> dict[str, Any]:
    """Keyword arguments of a learned id's environment classes, with the given overrides.

    The id's registered kwargs and episode limit; empty strings and 0 keep the id's values.
    """
    spec = _spec(env_id)
    if spec.vector_entry_point is None:
        raise ValueError(f"{env_id!r} is not a learned environment id")
    kwargs = dict(spec.kwargs)
    kwargs["device"] = device
    for name, value in (("tracking", tracking), ("checkpoint", checkpoint),
                        ("start_frames", start_frames)):
        if value:
            kwargs[name] = value
    if checkpoint and not start_frames:
        kwargs.pop("start_frames", None)  # the new checkpoint's own first frames
    kwargs["max_episode_steps"] = max_episode_steps or spec.max_episode_steps
    return kwargs


def frame_backed_kwargs(
    kwargs: Mapping[str, Any], num_envs: int, enforce: bool, cover: float = AGREE_COVER
) -> tuple[dict[str, Any], FrameBackedReach]:
    """``kwargs`` with ``task=`` a fresh ``FrameBackedReach`` for ``num_envs`` envs.

    Returns the new kwargs and the task (attach it to the env's simulator once built).
    """
    out = dict(kwargs)
    if out.get("task", "free") != "reach":
        raise ValueError(f"frame-backed rewards need a reach task, got task={out.get('task')!r}")
    model = load_model(out["checkpoint"], out.get("device", "auto"))  # cached: the env's own
    task = FrameBackedReach(
        num_envs, int(out.get("num_objects", 1)),
        (int(model.config.resolution[0]), int(model.config.resolution[1])),
        enforce=enforce, cover=cover, **dict(out.pop("task_kwargs", None) or {}),
    )
    out["task"] = task
    return out, task


def make_eval_vector(
    env_id: str,
    num_envs: int,
    *,
    device: str = "auto",
    cover: float = AGREE_COVER,
    tracking: str = "",
    checkpoint: str = "",
    start_frames: str = "",
    max_episode_steps: int = 0,
    num_objects: int = 0,
) -> gym.vector.VectorEnv:
    """``num_envs`` environments of ``env_id`` (next-step autoreset), raw Dict observations.

    Learned ids get a ``FrameBackedReach`` task that reports ``frame_backed`` without changing
    the id's rewards and ends (``enforce=False``). ``num_objects`` 0 keeps the id's K.
    """
    objects: dict[str, Any] = {"num_objects": num_objects} if num_objects else {}
    if is_twin(env_id):
        return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                            max_episode_steps=max_episode_steps or None, **objects)
    kwargs = learned_kwargs(env_id, device, tracking, checkpoint, start_frames,
                            max_episode_steps) | objects
    kwargs, task = frame_backed_kwargs(kwargs, num_envs, enforce=False, cover=cover)
    env = LCVGVectorEnv(num_envs, **kwargs)
    task.attach(simulator_of(env))
    return env


def make_train_venv(config: TrainConfig) -> VecEnv:
    """Build the training VecEnv of ``config``: batched learned env or the twin's DummyVecEnv.

    Wrapped in ``VecReachObservation``, ``VecScaledMoves`` and ``VecMonitor``.
    """
    base: VecEnv
    objects: dict[str, Any] = {"num_objects": config.num_objects} if config.num_objects else {}
    if config.train_radius_px:
        objects["task_kwargs"] = {"success_radius_px": config.train_radius_px}
    if is_twin(config.env):
        limit = config.max_episode_steps or None  # None: the id's registered limit
        base = DummyVecEnv(
            [lambda: gym.make(config.env, max_episode_steps=limit, **objects)] * config.envs)
    else:
        kwargs = learned_kwargs(config.env, config.device, config.tracking, config.checkpoint,
                                config.start_frames, config.max_episode_steps) | objects
        kwargs, task = frame_backed_kwargs(kwargs, config.envs, enforce=config.frame_backed,
                                           cover=config.agree_cover)
        learned = LCVGVecEnv(num_envs=config.envs, **kwargs)
        task.attach(simulator_of(learned))
        base = learned
    return VecMonitor(VecScaledMoves(VecReachObservation(base), config.max_step_px))


def reset_with_twins(env: gym.vector.VectorEnv, twins: Sequence[Any], seed: int
                     ) -> tuple[Any, dict[str, Any]]:
    """Reset twin i with ``seed + i`` and the learned vector ``env`` from their first frames.

    ``env`` runs one environment per twin (a reach task). Each twin's object k and its target
    are then the learned env's (``SpritesRealEnv.match_objects``). Returns the learned env's
    ``(observations, infos)``.
    """
    for i, twin in enumerate(twins):
        twin.reset(seed=seed + i)
    obs, info = env.reset(seed=seed, options={"frame": np.stack([twin.frame for twin in twins])})
    for i, twin in enumerate(twins):  # object k and its target are the same in both worlds
        twin.match_objects(info["centroids"][i], targets=info["target"][i],
                           present=np.asarray(info["present"][i], bool))
    return obs, info
