from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import demo
from agents.scripted import FollowPathPolicy, RandomPolicy, ReachPolicy
from lcvg_env.env import LCVGEnv
from lcvg_env.models import LayeredGenerator
from lcvg_env.registration import SPRITES_CHECKPOINT, SPRITES_FAST_CHECKPOINT, register_envs
from lcvg_env.spaces import ActionRanges
from lcvg_env.vector import LCVGVectorEnv
from tests.lcvg_env.conftest import BUNDLED, TINY


def test_reach_policy_points_at_the_target_and_saturates() -> None:
    policy = ReachPolicy(num_objects=2, action_ranges=ActionRanges(max_translation=0.1))
    obs = {
        "centroids": np.array([0.0, 0.0, 0.5, 0.5], np.float32),
        "target": np.array([0.05, -0.02, -0.5, 0.5], np.float32),
    }
    action, state = policy.predict(obs)
    np.testing.assert_allclose(action, [0.5, -0.2, -1.0, 0.0], atol=1e-6)
    assert state is None and action.dtype == np.float32
    batched = {key: np.stack([value, value]) for key, value in obs.items()}
    actions, _ = policy.predict(batched)
    assert actions.shape == (2, 4)
    np.testing.assert_allclose(actions[1], action)


def test_reach_policy_affine_rows_and_mask_fallback() -> None:
    policy = ReachPolicy(control="affine")
    mask = np.zeros((48, 48, 1), np.uint8)
    mask[10:20, 30:40] = 255  # centroid at pixel (34.5, 14.5)
    target = np.array([(2 * 34.5 + 1) / 48 - 1, (2 * 14.5 + 1) / 48 - 1], np.float32)
    action, _ = policy.predict({"mask": mask, "target": target})
    np.testing.assert_allclose(action, np.zeros(6), atol=1e-5)
    with pytest.raises(ValueError, match="target"):
        policy.predict(np.zeros((48, 48, 3), np.uint8))
    with pytest.raises(ValueError, match="control"):
        ReachPolicy(control="mask")


def test_follow_path_advances_and_rewinds() -> None:
    policy = FollowPathPolicy([[0.5, 0.0], [0.5, 0.5]], radius=0.1)
    obs = {"centroids": np.array([[0.0, 0.0], [0.45, 0.02]], np.float32)}
    actions, state = policy.predict(obs)
    assert state.tolist() == [[0], [1]]  # env 1 reached the first waypoint
    assert actions[0, 0] > 0 and actions[1, 1] > 0
    _, state = policy.predict(obs, state, episode_start=np.array([False, True]))
    assert state.tolist() == [[0], [1]]
    single, state1 = policy.predict({"centroids": np.array([0.5, 0.02], np.float32)})
    assert single.shape == (2,) and state1.tolist() == [[1]]
    with pytest.raises(ValueError, match="waypoints"):
        FollowPathPolicy(np.zeros((3, 3)))


def test_random_policy_is_seeded() -> None:
    space = gym.spaces.Box(-1, 1, (4,), np.float32)
    a = RandomPolicy(space, seed=3, num_envs=2).predict(None)[0]
    b = RandomPolicy(space, seed=3, num_envs=2).predict(None)[0]
    assert a.shape == (2, 4)
    np.testing.assert_array_equal(a, b)


def test_policies_drive_the_environments(tiny: dict) -> None:
    env = LCVGEnv(task="reach", observation_keys=("frame", "centroids", "target"), **tiny)
    policy = ReachPolicy.from_env(env)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        action, _ = policy.predict(obs)
        assert env.action_space.contains(action)
        obs, *_ = env.step(action)
    venv = LCVGVectorEnv(2, observation_keys=("frame", "mask"), **tiny)
    follow = FollowPathPolicy.from_env(venv, waypoints=[[0.5, 0.5]])
    obs, _ = venv.reset(seed=0)
    state = None
    for _ in range(2):
        actions, state = follow.predict(obs, state)
        obs, *_ = venv.step(actions)


def _reach_episodes(make_policy, num_envs: int = 16, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Run one episode per environment of the bundled reach task: (success, final distance)."""
    register_envs()
    env = gym.make_vec("LCVG-Sprites-Reach-v0", num_envs=num_envs,
                       vectorization_mode="vector_entry_point", autoreset_mode="Disabled",
                       device="cpu", **kwargs)
    policy = make_policy(env)
    obs, info = env.reset(seed=0)
    done = np.zeros(num_envs, bool)
    success = np.zeros(num_envs, bool)
    distance = np.asarray(info["distance"], np.float64).reshape(num_envs, -1).mean(axis=1)
    while not done.all():
        obs, _, terminated, truncated, info = env.step(policy.predict(obs)[0])
        step_distance = np.asarray(info["distance"], np.float64).reshape(num_envs, -1).mean(axis=1)
        distance = np.where(done, distance, step_distance)
        success |= terminated & ~done
        done |= terminated | truncated
    env.close()
    return success, distance


@pytest.mark.skipif(not BUNDLED, reason="bundled sprites checkpoint not present")
def test_reach_policy_beats_random_on_the_bundled_model() -> None:
    reach_success, reach_distance = _reach_episodes(ReachPolicy.from_env)
    random_success, random_distance = _reach_episodes(
        lambda env: RandomPolicy(env.single_action_space, seed=0, num_envs=env.num_envs))
    assert reach_success.mean() > random_success.mean()
    assert reach_distance.mean() < random_distance.mean()


@pytest.mark.skipif(not BUNDLED, reason="bundled sprites checkpoint not present")
@pytest.mark.parametrize("checkpoint,tracking", [
    (SPRITES_CHECKPOINT, "segment"), (SPRITES_FAST_CHECKPOINT, "anchored")])
def test_reach_policy_solves_the_bundled_reach_task(checkpoint: str, tracking: str) -> None:
    success, _ = _reach_episodes(ReachPolicy.from_env, num_envs=8, checkpoint=checkpoint,
                                 tracking=tracking)
    assert success.mean() >= 0.5


def test_demo_runs_and_writes_a_video(tiny: dict, tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo.gif"
    code = demo.main([
        "--episodes", "2", "--out", str(out), "--checkpoint", tiny["checkpoint"],
        "--device", "cpu", "--max-steps", "4",
    ])
    assert code == 0 and out.stat().st_size > 0
    printed = capsys.readouterr().out
    assert "success rate" in printed and "px" in printed and "frames/s" in printed
    summary = json.loads(printed.strip().splitlines()[-1])
    for key in ("success_rate", "frame_confirmed_success_rate", "real_success_rate"):
        assert 0.0 <= summary[key] <= 1.0
    # confirmed by the frame means the simulator claimed it too
    assert summary["frame_confirmed_success_rate"] <= summary["success_rate"]


def test_demo_says_when_the_bundled_checkpoint_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    if BUNDLED:
        pytest.skip("the bundled checkpoint is present")
    monkeypatch.setenv("LCVG_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert demo.main(["--episodes", "1", "--out", str(tmp_path / "x.gif")]) == 1
    assert "missing" in capsys.readouterr().err


class OracleGenerator(LayeredGenerator):
    """A perfect layered generator for red sprites on grey: the mask is the red pixels and the
    next frame draws red exactly where the (edited) mask is. It checks the whole control loop
    (action scaling, warp direction, tracking, reward, success) without a trained model."""

    def mask(self, frames: torch.Tensor) -> torch.Tensor:
        return ((frames[:, :1] - frames[:, 1:2]) > 0.5).float()

    def predict_next(self, frames: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        red = torch.tensor([0.9, -0.8, -0.8]).view(1, 3, 1, 1)
        return -0.2 + masks * (red + 0.2)


@pytest.mark.parametrize("num_objects", [1, 2])
def test_reach_policy_solves_reach_with_a_perfect_generator(num_objects: int) -> None:
    model = OracleGenerator(TINY)
    frames = np.full((4, 48, 48, 3), 102, np.uint8)
    corners = [(4, 4), (34, 6), (8, 34), (24, 22)]
    for i in range(4):
        for j in range(num_objects):
            x, y = corners[(i + 2 * j) % 4]
            frames[i, y : y + 8 + 2 * j, x : x + 8 + 2 * j] = (242, 25, 25)
    env = LCVGVectorEnv(4, model=model, start_frames=frames, task="reach",
                        num_objects=num_objects, observation_keys=("frame", "centroids", "target"),
                        autoreset_mode="Disabled", max_episode_steps=40, device="cpu")
    policy = ReachPolicy.from_env(env)
    obs, info = env.reset(seed=0)
    assert info["present"].all()
    done, success, returns = np.zeros(4, bool), np.zeros(4, bool), np.zeros(4)
    while not done.all():
        obs, reward, terminated, truncated, info = env.step(policy.predict(obs)[0])
        returns += np.where(done, 0.0, reward)
        success |= terminated & ~done
        done |= terminated | truncated
    assert success.all()
    assert (returns > 1.0).all()  # progress toward the targets plus the success bonus


def test_demo_help_and_config(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        demo.main(["--help"])
    assert info.value.code == 0
    assert "--max-steps" in capsys.readouterr().out
    assert demo.main(["--print-config", "--episodes", "3", "--style", "classic"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["episodes"] == 3 and printed["style"] == "classic"
    with pytest.raises(SystemExit):
        demo.main(["--episodes", "0"])
    assert "DemoConfig.episodes must be an int >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo.main(["--tracking", "follow"])
    assert "'segment', 'carry', 'anchored'" in capsys.readouterr().err
