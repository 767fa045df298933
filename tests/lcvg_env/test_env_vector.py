from __future__ import annotations

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from lcvg_env.env import LCVGEnv
from lcvg_env.vector import LCVGVectorEnv
from tests.lcvg_env.conftest import tiny_frames

REACH = {"task": "reach", "observation_keys": ("frame", "centroids", "target")}


def actions(env: LCVGVectorEnv, seed: int) -> list[np.ndarray]:
    env.action_space.seed(seed)
    return [env.action_space.sample() for _ in range(8)]


def test_spaces_and_metadata(tiny: dict) -> None:
    env = LCVGVectorEnv(3, **tiny, **REACH)
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert env.action_space.shape == (3, 2)
    assert env.observation_space["frame"].shape == (3, 48, 48, 3)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert info["step"].tolist() == [0, 0, 0] and info["_step"].all()
    assert info["target"].shape == (3, 1, 2)
    nxt, *_ = env.step(np.zeros((3, 2), np.float32))
    for key in obs:  # fresh arrays every call
        assert not np.shares_memory(obs[key], nxt[key])


def test_seeded_vector_env_matches_single_env_episode_starts(tiny: dict) -> None:
    env = LCVGVectorEnv(3, **tiny, **REACH)
    obs, info = env.reset(seed=10)
    for i in range(3):
        single = LCVGEnv(**tiny, **REACH)
        s_obs, s_info = single.reset(seed=10 + i)
        np.testing.assert_array_equal(obs["frame"][i], s_obs["frame"])
        np.testing.assert_array_equal(info["target"][i], s_info["target"])


def test_next_step_autoreset(tiny: dict) -> None:
    env = LCVGVectorEnv(2, max_episode_steps=2, **tiny)
    env.reset(seed=0)
    zero = np.zeros((2, 2), np.float32)
    env.step(zero)
    obs, rewards, terminated, truncated, info = env.step(zero)
    assert truncated.all() and info["step"].tolist() == [2, 2]
    obs, rewards, terminated, truncated, info = env.step(zero)  # the reset step
    assert not truncated.any() and not terminated.any() and rewards.tolist() == [0.0, 0.0]
    assert info["step"].tolist() == [0, 0]


def test_same_step_autoreset_reports_final_observation(tiny: dict) -> None:
    env = LCVGVectorEnv(2, autoreset_mode="SameStep", max_episode_steps=2, **tiny, **REACH)
    env.reset(seed=0)
    zero = np.zeros((2, 2), np.float32)
    env.step(zero)
    obs, _, _, truncated, info = env.step(zero)
    assert truncated.all()
    assert info["_final_obs"].all() and info["final_obs"][0]["frame"].shape == (48, 48, 3)
    assert info["final_info"]["step"].tolist() == [2, 2]
    assert info["step"].tolist() == [0, 0]  # already the new episodes


def test_disabled_autoreset_and_reset_mask(tiny: dict) -> None:
    env = LCVGVectorEnv(3, autoreset_mode=AutoresetMode.DISABLED, max_episode_steps=1, **tiny)
    env.reset(seed=0)
    zero = np.zeros((3, 2), np.float32)
    _, _, _, truncated, _ = env.step(zero)
    assert truncated.all()
    obs, info = env.reset(options={"reset_mask": np.array([True, False, True])})
    assert info["_step"].tolist() == [True, False, True]
    _, _, _, truncated, info = env.step(zero)
    assert info["step"].tolist() == [1, 2, 1]
    with pytest.raises(ValueError, match="reset_mask"):
        env.reset(options={"reset_mask": np.array([1, 0, 1])})


def test_partial_autoreset_keeps_other_episodes_continuous(tiny: dict) -> None:
    """Env 0 restarts in the middle; env 1 must see exactly the rollout it sees without it."""
    kwargs = dict(autoreset_mode=AutoresetMode.DISABLED, **tiny, **REACH)
    plan = actions(LCVGVectorEnv(2, **kwargs), seed=1)
    reference = LCVGVectorEnv(2, **kwargs)
    reference.reset(seed=5)
    ref = [reference.step(a) for a in plan]
    env = LCVGVectorEnv(2, **kwargs)
    env.reset(seed=5)
    got = []
    for t, a in enumerate(plan):
        got.append(env.step(a))
        if t in (1, 4):
            env.reset(options={"reset_mask": np.array([True, False])})
    for (obs_r, rew_r, _, _, info_r), (obs_g, rew_g, _, _, info_g) in zip(ref, got):
        np.testing.assert_array_equal(obs_r["frame"][1], obs_g["frame"][1])
        np.testing.assert_array_equal(obs_r["target"][1], obs_g["target"][1])
        assert rew_r[1] == rew_g[1]
        assert info_r["step"][1] == info_g["step"][1]
    assert got[-1][4]["step"].tolist() == [3, 8]


def test_next_step_autoreset_resets_only_finished_envs(tiny: dict) -> None:
    kwargs = dict(**tiny, **REACH)
    plan = actions(LCVGVectorEnv(2, **kwargs), seed=2)
    runs = {}
    for limit in (3, None):
        env = LCVGVectorEnv(2, max_episode_steps=limit, **kwargs)
        env.reset(seed=2)
        env.step(plan[0])
        env.reset(options={"reset_mask": np.array([False, True])})  # put env 1 out of phase
        runs[limit] = [env.step(a) for a in plan[1:5]]
    assert [r[4]["step"].tolist() for r in runs[3]] == [[2, 1], [3, 2], [0, 3], [1, 0]]
    assert [r[3].tolist() for r in runs[3]][1:3] == [[True, False], [False, True]]
    # env 1's episode went on untouched while env 0 was truncated and restarted
    for t in range(3):
        np.testing.assert_array_equal(runs[3][t][0]["frame"][1], runs[None][t][0]["frame"][1])
        assert runs[3][t][1][1] == runs[None][t][1][1]


def test_batched_first_frames_option(tiny: dict) -> None:
    env = LCVGVectorEnv(2, **tiny)
    frames = tiny_frames(2, seed=3)
    obs, _ = env.reset(options={"frame": frames})
    np.testing.assert_array_equal(obs, frames)
    with pytest.raises(ValueError, match="2 frames"):
        env.reset(options={"frame": tiny_frames(3)})


def test_render_returns_one_frame_per_env(tiny: dict) -> None:
    env = LCVGVectorEnv(2, render_mode="rgb_array", render_scale=2, **tiny)
    env.reset(seed=0)
    frames = env.render()
    assert len(frames) == 2 and frames[0].shape == (96, 96, 3)


def test_bad_vector_actions(tiny: dict) -> None:
    env = LCVGVectorEnv(2, **tiny)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(3, 2\)"):
        env.step(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="nan"):
        env.step(np.array([[0, 0], [np.nan, 0]], np.float32))


def test_closed_unknown_options_and_complex_actions_raise(tiny: dict) -> None:
    env = LCVGVectorEnv(2, **tiny)
    with pytest.raises(ValueError, match=r"unknown reset option\(s\) \['mask'\]; LCVGVectorEnv "
                                         r"accepts \('reset_mask', 'frame', 'target'\)"):
        env.reset(options={"mask": np.array([True, False])})
    with pytest.raises(TypeError, match="options must be a dict or None, got str"):
        env.reset(options="frame")
    env.reset(seed=0)
    with pytest.raises(TypeError, match="complex"):
        env.step(np.zeros((2, 2), np.complex64))
    env.close()
    with pytest.raises(RuntimeError, match=r"LCVGVectorEnv\.step\(\) called after close"):
        env.step(np.zeros((2, 2), np.float32))
    with pytest.raises(RuntimeError, match=r"LCVGVectorEnv\.reset\(\) called after close"):
        env.reset(seed=0)
    with pytest.raises(TypeError, match="num_envs must be an int >= 1, got 2.0"):
        LCVGVectorEnv(2.0, **tiny)


def test_objects_found_is_batched(tiny: dict) -> None:
    env = LCVGVectorEnv(3, num_objects=2, **tiny)
    _, info = env.reset(seed=0)
    assert info["objects_found"].shape == (3,) and info["_objects_found"].all()
    np.testing.assert_array_equal(info["objects_found"], info["present"].sum(axis=1))
