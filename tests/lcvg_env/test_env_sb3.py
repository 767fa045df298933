from __future__ import annotations

import numpy as np
import pytest

from lcvg_env.sb3 import LCVGVecEnv

REACH = {"task": "reach", "observation_keys": ("frame", "centroids", "target")}


def test_same_step_reset_with_terminal_observation(tiny: dict) -> None:
    env = LCVGVecEnv(2, max_episode_steps=2, **tiny, **REACH)
    env.seed(0)
    obs = env.reset()
    assert obs["frame"].shape == (2, 48, 48, 3)
    assert env.reset_infos[0]["step"] == 0
    zero = np.zeros((2, 2), np.float32)
    _, rewards, dones, infos = env.step(zero)
    assert rewards.dtype == np.float32 and not dones.any()
    assert "terminal_observation" not in infos[0]
    obs, _, dones, infos = env.step(zero)
    assert dones.all()
    assert infos[0]["TimeLimit.truncated"] is True
    assert infos[1]["terminal_observation"]["frame"].shape == (48, 48, 3)
    assert infos[0]["step"] == 2 and env.reset_infos[0]["step"] == 0


def test_success_is_not_a_time_limit(tiny: dict) -> None:
    env = LCVGVecEnv(1, task="reach", task_kwargs={"success_radius": 4.0}, **tiny)
    env.seed(0)  # a start frame where the random model's mask holds an object
    env.reset()
    _, rewards, dones, infos = env.step(np.zeros((1, 2), np.float32))
    assert dones[0] and infos[0]["TimeLimit.truncated"] is False and infos[0]["is_success"]


def test_seeding_is_reproducible(tiny: dict) -> None:
    runs = []
    for _ in range(2):
        env = LCVGVecEnv(2, **tiny, **REACH)
        env.seed(7)
        runs.append(env.reset()["target"])
    np.testing.assert_array_equal(runs[0], runs[1])


def test_vec_env_api(tiny: dict) -> None:
    env = LCVGVecEnv(2, render_mode="rgb_array", **tiny)
    env.reset()
    assert env.get_attr("render_mode") == ["rgb_array", "rgb_array"]
    assert env.env_is_wrapped(object) == [False, False]
    assert len(env.get_images()) == 2
    assert env.render().ndim == 3
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros((2, 5), np.float32))


@pytest.mark.slow
def test_ppo_learns_256_steps(tiny: dict) -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor

    env = VecMonitor(LCVGVecEnv(4, max_episode_steps=16, **tiny, **REACH))
    model = PPO(
        "MultiInputPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu"
    )
    model.learn(total_timesteps=256)
    assert model.num_timesteps == 256
    action, _ = model.predict(env.reset(), deterministic=True)
    assert action.shape == (4, 2)


def test_reset_and_step_after_close_raise(tiny: dict) -> None:
    env = LCVGVecEnv(2, **tiny)
    env.reset()
    env.close()
    with pytest.raises(RuntimeError, match=r"LCVGVecEnv\.step_async\(\) called after close"):
        env.step(np.zeros((2, 2), np.float32))
    with pytest.raises(RuntimeError, match=r"LCVGVecEnv\.reset\(\) called after close"):
        env.reset()


def test_unknown_options_raise_at_reset(tiny: dict) -> None:
    env = LCVGVecEnv(1, **tiny)
    env.set_options({"frame_index": 3})
    with pytest.raises(ValueError, match=r"unknown reset option\(s\) \['frame_index'\]"):
        env.reset()
    with pytest.raises(TypeError, match="num_envs must be an int >= 1, got True"):
        LCVGVecEnv(True, **tiny)
