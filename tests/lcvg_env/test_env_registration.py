from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from lcvg_env.env import CheckpointNotFoundError, LCVGEnv
from lcvg_env.registration import ENVIRONMENTS, register_envs
from lcvg_env.vector import LCVGVectorEnv
from tests.lcvg_env.conftest import BUNDLED

ROOT = Path(__file__).resolve().parents[2]
MAKEABLE = ["LCVG-Sprites-v0", "LCVG-Sprites-Reach-v0"]  # no download needed


@pytest.fixture(autouse=True)
def _registered() -> None:
    register_envs()


def test_every_id_is_registered_with_its_entry_points() -> None:
    twins = {"LCVG-Sprites-Real-v0", "LCVG-Sprites-Reach-Real-v0"}
    assert twins < set(ENVIRONMENTS)
    for env_id in ENVIRONMENTS:
        spec = gym.spec(env_id)
        if env_id in twins:  # the ground-truth twins: Gymnasium's own vectorisation
            assert spec.entry_point == "lcvg_env.world.twin:SpritesRealEnv"
            assert spec.vector_entry_point is None
        else:
            assert spec.entry_point == "lcvg_env.env:LCVGEnv"
            assert spec.vector_entry_point == "lcvg_env.vector:LCVGVectorEnv"
        assert spec.max_episode_steps is not None


@pytest.mark.parametrize("env_id", MAKEABLE)
def test_checkers_on_registered_ids(env_id: str, sprites_kwargs: dict) -> None:
    env = gym.make(env_id, **sprites_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped, warn=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_time_limit_of_registered_id(sprites_kwargs: dict) -> None:
    env = gym.make("LCVG-Sprites-Reach-v0", max_episode_steps=2, **sprites_kwargs)
    env.reset(seed=0)
    env.step(env.action_space.sample() * 0)
    *_, truncated, _ = env.step(env.action_space.sample() * 0)
    assert truncated or env.unwrapped.core.task.success.any()


def test_make_vec_returns_the_native_vector_env(sprites_kwargs: dict) -> None:
    env = gym.make_vec(
        "LCVG-Sprites-Reach-v0", num_envs=3, vectorization_mode="vector_entry_point",
        **sprites_kwargs,
    )
    assert isinstance(env, LCVGVectorEnv) and env.num_envs == 3
    assert env.core.max_episode_steps == ENVIRONMENTS["LCVG-Sprites-Reach-v0"]["max_episode_steps"]
    obs, _ = env.reset(seed=0)
    assert obs["frame"].shape[0] == 3


@pytest.mark.skipif(not BUNDLED, reason="bundled sprites checkpoint not present")
def test_bundled_sprites_env_needs_no_arguments() -> None:
    env = gym.make("LCVG-Sprites-v0")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3)


@pytest.mark.parametrize("env_id", ["LCVG-BAIR-v0", "LCVG-Tennis-v0"])
def test_paper_ids_without_checkpoint_say_where_and_how(
    env_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LCVG_CHECKPOINT_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(CheckpointNotFoundError) as error:
        gym.make(env_id)
    message = str(error.value)
    assert str(tmp_path / "empty") in message  # $LCVG_CHECKPOINT_DIR
    assert str(tmp_path / "cache" / "lcvg") in message  # the user cache
    assert "LCVG_CHECKPOINT_DIR" in message and "~/.cache/lcvg" in message
    assert "checkpoint=" in message and "lcvg-train --preset paper_" in message
    with pytest.raises(CheckpointNotFoundError):
        gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point")


def test_paper_id_with_a_checkpoint_of_the_wrong_size(tiny: dict) -> None:
    with pytest.raises(ValueError, match=r"\(256, 256\)"):
        gym.make("LCVG-BAIR-v0", checkpoint=tiny["checkpoint"])


def test_paper_id_from_the_checkpoint_dir(
    tiny: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # any checkpoint named like the id's is found in $LCVG_CHECKPOINT_DIR (size checked after)
    (tmp_path / "bair.safetensors").write_bytes(Path(tiny["checkpoint"]).read_bytes())
    monkeypatch.setenv("LCVG_CHECKPOINT_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="expects a model at resolution"):
        gym.make("LCVG-BAIR-v0")
    env = gym.make("LCVG-BAIR-v0", expected_resolution=None, start_frames=tiny["start_frames"])
    assert isinstance(env.unwrapped, LCVGEnv)


def test_fresh_interpreter_import_and_make(sprites_kwargs: dict) -> None:
    code = (
        "import sys, gymnasium as gym, lcvg_env\n"
        f"env = gym.make('LCVG-Sprites-v0', **{sprites_kwargs!r})\n"
        "obs, info = env.reset(seed=0)\n"
        "env.step(env.action_space.sample())\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('training', 'agents')]\n"
        "assert not bad, bad\n"
        "print('ok', obs.shape)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok")
