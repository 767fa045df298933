from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from lcvg_env.env import LCVGEnv
from lcvg_env.registration import register_envs
from lcvg_env.spaces import ActionRanges
from tests.lcvg_env.conftest import tiny_frames

VARIANTS = {
    "position": {},
    "affine_reach_dict": {
        "control": "affine",
        "num_objects": 2,
        "task": "reach",
        "observation_keys": ("frame", "mask", "centroids", "target"),
    },
    "mask": {"control": "mask", "observation_keys": ("frame", "mask")},
    "position_carry": {"tracking": "carry", "num_objects": 2},
    "affine_anchored_reach": {"control": "affine", "tracking": "anchored", "task": "reach",
                              "observation_keys": ("frame", "mask", "centroids", "target")},
    "mask_carry": {"control": "mask", "tracking": "carry", "observation_keys": ("frame", "mask")},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_checkers_pass_with_warnings_as_errors(tiny: dict, variant: str) -> None:
    env = LCVGEnv(max_episode_steps=20, **tiny, **VARIANTS[variant])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=True)


def test_spaces(tiny: dict) -> None:
    env = LCVGEnv(num_objects=3, control="affine", **tiny)
    assert env.action_space.shape == (18,)
    assert env.action_space.dtype == np.float32
    assert float(env.action_space.low.min()) == -1 and float(env.action_space.high.max()) == 1
    assert env.observation_space.shape == (48, 48, 3)
    assert env.observation_space.dtype == np.uint8
    env = LCVGEnv(control="mask", **tiny)
    assert env.action_space.shape == (48, 48)


def rollout(env: LCVGEnv, seed: int, steps: int = 4) -> list:
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    env.action_space.seed(seed)
    for _ in range(steps):
        out.append(env.step(env.action_space.sample()))
    return out


def test_two_envs_same_seed_same_rollout(tiny: dict) -> None:
    kwargs = {"task": "reach", "observation_keys": ("frame", "centroids", "target"), **tiny}
    a, b = rollout(LCVGEnv(**kwargs), 3), rollout(LCVGEnv(**kwargs), 3)
    for (obs_a, *rest_a), (obs_b, *rest_b) in zip(a, b):
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
        assert repr(rest_a) == repr(rest_b)
    c = rollout(LCVGEnv(**kwargs), 4)
    assert any(
        not np.array_equal(x[0]["target"], y[0]["target"]) for x, y in zip(a, c)
    ), "another seed must change the episode"


def test_observations_are_fresh_arrays(tiny: dict) -> None:
    env = LCVGEnv(observation_keys=("frame", "mask"), **tiny)
    first, _ = env.reset(seed=0)
    second, *_ = env.step(np.zeros(2, np.float32))
    third, *_ = env.step(np.zeros(2, np.float32))
    for key in first:
        assert not np.shares_memory(first[key], second[key])
        assert not np.shares_memory(second[key], third[key])


def test_info_has_no_timing_and_is_deterministic(tiny: dict) -> None:
    env = LCVGEnv(task="reach", observation_keys=("frame", "centroids", "target"), **tiny)
    _, info = env.reset(seed=1)
    assert set(info) == {
        "step", "centroids", "centroids_px", "present", "objects_found",
        "target", "distance", "distance_px", "is_success",
    }
    assert info["target"].shape == (1, 2)


def test_reset_with_a_given_frame_any_size(tiny: dict) -> None:
    env = LCVGEnv(**tiny)
    frame = tiny_frames(1, seed=9)[0]
    obs, _ = env.reset(options={"frame": frame})
    np.testing.assert_array_equal(obs, frame)
    big = np.repeat(np.repeat(frame, 2, axis=0), 2, axis=1)  # (96, 96, 3): resized
    obs, _ = env.reset(options={"frame": big})
    assert obs.shape == (48, 48, 3)


@pytest.mark.parametrize(
    ("frame", "pattern"),
    [
        (np.zeros((48, 48, 3), np.float32), "uint8.*float32"),
        (np.zeros((48, 48), np.uint8), r"\(48, 48\)"),
        (np.zeros((48, 48, 4), np.uint8), r"\(1, 48, 48, 4\)"),
        (np.zeros((2, 48, 48, 3), np.uint8), r"one frame.*\(2, 48, 48, 3\)"),
        ("frame.png", "str"),
    ],
)
def test_bad_first_frames_raise_value_error(tiny: dict, frame: object, pattern: str) -> None:
    env = LCVGEnv(**tiny)
    with pytest.raises(ValueError, match=pattern):
        env.reset(options={"frame": frame})


def test_default_start_frames_beside_the_checkpoint(tiny: dict) -> None:
    env = LCVGEnv(checkpoint=tiny["checkpoint"], device="cpu")  # finds tiny_starts.npz
    assert env.core.starts is not None and len(env.core.starts) == 6


def test_no_start_frames_needs_a_frame(tiny: dict, tmp_path: Path) -> None:
    checkpoint = tmp_path / "alone.safetensors"
    shutil.copy(tiny["checkpoint"], checkpoint)
    env = LCVGEnv(checkpoint=str(checkpoint), device="cpu")
    with pytest.raises(ValueError, match="start_frames"):
        env.reset(seed=0)
    env.reset(options={"frame": tiny_frames(1)[0]})


@pytest.mark.parametrize(
    ("action", "pattern"),
    [
        (np.array([np.nan, 0.0], np.float32), r"finite.*nan"),
        (np.zeros(3, np.float32), r"shape \(2,\).*shape \(3,\)"),
        (np.zeros((2, 2), np.float32), r"shape \(2,\).*shape \(2, 2\)"),
        (np.array(["a", "b"]), "numeric"),
    ],
)
def test_bad_actions_raise_errors_quoting_them(tiny: dict, action: object, pattern: str) -> None:
    env = LCVGEnv(**tiny)
    env.reset(seed=0)
    with pytest.raises((ValueError, TypeError), match=pattern):
        env.step(action)


def test_bad_mask_action(tiny: dict) -> None:
    env = LCVGEnv(control="mask", **tiny)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="0 and 1"):
        env.step(np.full((48, 48), 0.5))


def test_out_of_range_actions_are_clipped(tiny: dict) -> None:
    a = LCVGEnv(**tiny)
    b = LCVGEnv(**tiny)
    a.reset(seed=0)
    b.reset(seed=0)
    obs_a, *_ = a.step(np.array([5.0, -7.0], np.float32))
    obs_b, *_ = b.step(np.array([1.0, -1.0], np.float32))
    np.testing.assert_array_equal(obs_a, obs_b)


def test_reach_success_terminates(tiny: dict) -> None:
    env = LCVGEnv(task="reach", task_kwargs={"success_radius": 4.0}, **tiny)
    _, info = env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert info["present"].all()
    assert terminated and not truncated and info["is_success"]
    assert reward >= 1.0


def test_reach_target_option_and_reward_is_progress(tiny: dict) -> None:
    env = LCVGEnv(task="reach", **tiny)
    _, info = env.reset(seed=0, options={"target": [[0.5, -0.5]]})
    np.testing.assert_allclose(info["target"], [[0.5, -0.5]])
    before = info["distance"].copy()
    _, reward, *_, info = env.step(np.zeros(2, np.float32))
    if info["present"].all():
        assert reward == pytest.approx(float((before - info["distance"]).sum()), abs=1e-5)


def test_truncation_after_max_episode_steps(tiny: dict) -> None:
    env = LCVGEnv(max_episode_steps=2, **tiny)
    env.reset(seed=0)
    assert env.step(np.zeros(2, np.float32))[3] is False
    assert env.step(np.zeros(2, np.float32))[3] is True


def test_render_rgb_array(tiny: dict) -> None:
    env = LCVGEnv(render_mode="rgb_array", render_scale=3, task="reach", **tiny)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (144, 144, 3) and frame.dtype == np.uint8
    plain = LCVGEnv(render_mode="rgb_array", render_scale=1, render_overlay=False, **tiny)
    obs, _ = plain.reset(seed=0)
    np.testing.assert_array_equal(plain.render(), obs)


def test_action_ranges_are_applied(tiny: dict) -> None:
    env = LCVGEnv(action_ranges={"max_translation": 0.5}, **tiny)
    assert env.core.action_ranges == ActionRanges(max_translation=0.5)
    with pytest.raises(ValueError, match="max_rotation"):
        ActionRanges(max_rotation=-1.0)


def test_bad_arguments(tiny: dict) -> None:
    with pytest.raises(ValueError, match="control"):
        LCVGEnv(control="joystick", **tiny)
    with pytest.raises(ValueError, match="observation keys"):
        LCVGEnv(observation_keys=("mask",), **tiny)
    with pytest.raises(ValueError, match="target"):
        LCVGEnv(observation_keys=("frame", "target"), **tiny)
    with pytest.raises(ValueError, match="resolution"):
        LCVGEnv(expected_resolution=(256, 256), **tiny)
    with pytest.raises(ValueError, match="render_mode"):
        LCVGEnv(render_mode="ascii", **tiny)


@pytest.mark.parametrize("num_objects", [2.5, "2", True, 2.0, None])
def test_num_objects_must_be_an_int(tiny: dict, num_objects: object) -> None:
    with pytest.raises(TypeError, match=rf"num_objects must be an int >= 1, got {num_objects!r}"):
        LCVGEnv(num_objects=num_objects, **tiny)
    register_envs()
    with pytest.raises(TypeError, match="num_objects must be an int >= 1"):
        gym.make("LCVG-Sprites-v0", num_objects=num_objects, **tiny)
    with pytest.raises(ValueError, match="num_objects must be an int >= 1, got 0"):
        LCVGEnv(num_objects=0, **tiny)
    env = LCVGEnv(num_objects=np.int64(2), **tiny)
    assert env.core.num_objects == 2 and type(env.core.num_objects) is int
    assert env.action_space.shape == (4,)


def test_objects_found_says_how_many_of_k_the_first_frame_showed(tiny: dict) -> None:
    k = 600  # more than the 24 * 24 8-connected components a 48x48 mask can hold
    env = LCVGEnv(num_objects=k, tracking="carry", **tiny)
    assert env.action_space.shape == (2 * k,)  # not capped: the count is per first frame
    _, info = env.reset(seed=0)
    found = info["objects_found"]
    assert isinstance(found, int) and 0 <= found < k
    assert found == int(info["present"].sum())
    assert not info["present"][found:].any()
    assert np.all(info["centroids"][found:] == 0.0)
    _, *_, info = env.step(np.zeros(2 * k, np.float32))
    assert info["objects_found"] == found  # constant through the episode


def test_step_and_reset_after_close_raise(tiny: dict) -> None:
    env = LCVGEnv(**tiny)
    env.reset(seed=0)
    env.close()
    env.close()  # idempotent
    with pytest.raises(RuntimeError, match=r"LCVGEnv\.step\(\) called after close\(\)"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(RuntimeError, match=r"LCVGEnv\.reset\(\) called after close\(\)"):
        env.reset(seed=0)


def test_unknown_or_non_dict_reset_options_raise(tiny: dict) -> None:
    env = LCVGEnv(**tiny)
    with pytest.raises(ValueError, match=r"unknown reset option\(s\) \['frames'\]; LCVGEnv "
                                         r"accepts \('frame', 'target'\)"):
        env.reset(options={"frames": tiny_frames(1)[0]})
    with pytest.raises(ValueError, match=r"\['reset_mask'\]"):
        env.reset(options={"reset_mask": np.array([True])})
    with pytest.raises(TypeError, match="options must be a dict or None, got list"):
        env.reset(options=[("frame", tiny_frames(1)[0])])
    obs, _ = env.reset(seed=0, options={})
    assert obs.shape == (48, 48, 3)


def test_complex_actions_are_refused(tiny: dict) -> None:
    env = LCVGEnv(**tiny)
    env.reset(seed=0)
    with pytest.raises(TypeError, match="actions must be real numbers, got complex dtype"):
        env.step(np.array([0.5 + 0.1j, 0.0]))
    with pytest.raises(ValueError, match=r"fit in float32.*1\.e\+39"):
        env.step(np.array([1e39, 0.0]))


def test_reach_success_radius_in_pixels_replaces_the_normalised_one():
    from lcvg_env.tasks import ReachTask

    assert ReachTask(1, 1, (64, 64), success_radius_px=3.2).success_radius == pytest.approx(0.1)
    assert ReachTask(1, 1, (32, 64), success_radius=0.5,
                     success_radius_px=2.0).success_radius == pytest.approx(0.0625)
    with pytest.raises(TypeError, match="success_radius_px"):
        ReachTask(1, 1, (64, 64), success_radius_px="2")
