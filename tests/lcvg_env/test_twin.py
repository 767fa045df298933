"""The ground-truth twin: exact dynamics, the learned env's interface, pairing, errors."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from lcvg_env.control import params_to_matrix
from lcvg_env.registration import ENVIRONMENTS, TWIN_ENTRY_POINT, register_envs
from lcvg_env.world import Poses, SceneConfig, paired_reset, sample_scene
from lcvg_env.world.twin import SpritesRealEnv, forward_motion
from tests.lcvg_env.conftest import BUNDLED

REACH_KEYS = ("frame", "centroids", "target")


@pytest.fixture(autouse=True)
def _registered() -> None:
    register_envs()


def _one_object(shape: str = "square", center=(30.0, 34.0), radius: float = 10.0, angle=0.0):
    """A classic scene with one object at a known pose."""
    scene, _ = sample_scene(
        SceneConfig(objects=(1, 1), shapes=(shape,), noise_std=0.0), np.random.default_rng(0)
    )
    return scene, Poses.from_angles([center], [angle], [radius])


def test_position_step_moves_the_visible_centroid_by_the_commanded_pixels() -> None:
    env = SpritesRealEnv(noise=False)
    scene, poses = _one_object("star")
    _, info0 = env.reset(seed=0, options={"scene": (scene, poses)})
    # a = (0.5, -0.25): 0.5 * 0.125 normalised units = 1/32 of the frame = 2 px; -1 px
    _, _, _, _, info1 = env.step(np.array([0.5, -0.25], np.float32))
    moved = info1["centroids_px"] - info0["centroids_px"]
    np.testing.assert_allclose(moved[0], [2.0, -1.0], atol=0.1)
    np.testing.assert_allclose(env.poses.centers[0], [32.0, 33.0])
    # the normalised centroid follows align_corners=False
    np.testing.assert_allclose(
        info1["centroids"][0], (2 * info1["centroids_px"][0] + 1) / 64 - 1, atol=1e-6
    )
    assert info1["present"].tolist() == [True] and info1["step"] == 1


def test_affine_step_translates_the_centre_and_scales_the_area() -> None:
    env = SpritesRealEnv(control="affine", noise=False)
    scene, poses = _one_object("square", radius=10.0, angle=0.2)
    env.reset(seed=0, options={"scene": (scene, poses)})
    area0 = env.true_masks()[0].sum()
    # dx = 0.75 (3 px), dy = -0.5 (-2 px), rotation 0.6 * 15 deg, both log scales 1 * log 1.25
    action = np.array([0.75, -0.5, 0.6, 1.0, 1.0, 0.0], np.float32)
    _, _, _, _, info = env.step(action)
    np.testing.assert_allclose(env.poses.centers[0], [33.0, 32.0], atol=1e-9)
    # the visible centroid moves with the true centre (to pixelisation: a turned square's mask
    # centroid is within a few tenths of a pixel of its centre)
    np.testing.assert_allclose(info["centroids_px"][0], [33.0, 32.0], atol=0.3)
    ratio = env.true_masks()[0].sum() / area0
    # area x 1.25^2 = 1.5625; a 17x17 px square's mask area is exact to about its perimeter x
    # 0.1 px (random edge crossings), about 2 %: 3 % tolerance
    assert abs(ratio - 1.25**2) / 1.25**2 < 0.03, ratio
    np.testing.assert_allclose(env.poses.scales()[0], 10.0 * 1.25, rtol=1e-9)


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_forward_motion_is_what_params_to_matrix_implies(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    params = rng.uniform(-0.3, 0.3, size=(5, 6))
    centers = rng.uniform(-0.8, 0.8, size=(5, 2))
    a_pix, t_pix = forward_motion(params, size)
    h, w = size
    k = np.diag([w / 2.0, h / 2.0])
    k_inv = np.linalg.inv(k)
    a_norm = k_inv @ a_pix @ k  # (5, 2, 2)
    t_norm = t_pix / np.array([w / 2.0, h / 2.0])
    inv = np.linalg.inv(a_norm)
    offset = centers - (inv @ (centers + t_norm)[..., None])[..., 0]
    expected = np.concatenate([inv, offset[..., None]], axis=-1)
    theta = params_to_matrix(
        torch.tensor(params), torch.tensor(centers), size=size
    ).numpy()
    np.testing.assert_allclose(theta, expected, atol=1e-9)
    np.testing.assert_allclose(t_pix, params[:, :2] * [w / 2, h / 2])
    eye, t2 = forward_motion(params[:, :2], size)
    np.testing.assert_array_equal(eye, np.broadcast_to(np.eye(2), (5, 2, 2)))
    np.testing.assert_array_equal(t2, t_pix)


def test_uncontrolled_objects_stay_and_order_is_by_visible_area() -> None:
    env = SpritesRealEnv(num_objects=2, scene_objects=(4, 4))
    env.reset(seed=3)
    areas = env.all_masks().sum(axis=(1, 2))
    controlled = env.controlled
    assert areas[controlled[0]] >= areas[controlled[1]]
    assert areas[controlled[1]] >= np.delete(areas, controlled).max()
    before = env.poses
    env.step(np.array([1, 1, -1, 0.5], np.float32))
    after = env.poses
    others = np.setdiff1d(np.arange(4), controlled)
    np.testing.assert_array_equal(before.centers[others], after.centers[others])
    np.testing.assert_array_equal(before.linear[others], after.linear[others])
    assert not np.array_equal(before.centers[controlled], after.centers[controlled])
    assert env.true_masks().shape == (2, 64, 64) and env.all_masks().shape == (4, 64, 64)
    bg = env.background()
    assert bg.shape == (64, 64, 3) and bg.dtype == np.uint8


def test_borders_keep_the_object_partly_in_view() -> None:
    env = SpritesRealEnv(noise=False)
    env.reset(seed=0, options={"scene": _one_object()})
    for _ in range(30):
        _, _, _, _, info = env.step(np.array([1.0, 1.0], np.float32))
    np.testing.assert_allclose(env.poses.centers[0], [63.0, 63.0])
    assert info["present"][0] and info["centroids_px"][0].min() > 55


@pytest.mark.parametrize("control", ["position", "affine"])
@pytest.mark.parametrize("num_objects", [1, 2])
@pytest.mark.parametrize("task", ["free", "reach"])
def test_env_checkers(control: str, num_objects: int, task: str) -> None:
    keys = REACH_KEYS if task == "reach" else ("frame",)
    env = gym.make(
        "LCVG-Sprites-Real-v0", control=control, num_objects=num_objects, task=task,
        observation_keys=keys, render_mode="rgb_array",
        style="varied" if num_objects == 2 else "classic",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped, warn=True)
    env.reset(seed=0)
    assert env.render().shape == (256, 256, 3)


def test_deterministic_under_a_seed() -> None:
    def run(seed: int) -> list:
        env = gym.make("LCVG-Sprites-Reach-Real-v0", num_objects=2, control="affine")
        obs, info = env.reset(seed=seed)
        out = [obs["frame"], info["target"]]
        env.action_space.seed(seed)
        for _ in range(3):
            obs, reward, *_ = env.step(env.action_space.sample())
            out += [obs["frame"], obs["centroids"], reward]
        return out

    a, b, c = run(4), run(4), run(5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_registered_ids_and_sync_vectorisation() -> None:
    for env_id in ("LCVG-Sprites-Real-v0", "LCVG-Sprites-Reach-Real-v0"):
        spec = gym.spec(env_id)
        assert spec.entry_point == TWIN_ENTRY_POINT and spec.vector_entry_point is None
        assert spec.max_episode_steps == ENVIRONMENTS[env_id]["max_episode_steps"]
    env = gym.make("LCVG-Sprites-Reach-Real-v0")
    assert env.spec.max_episode_steps == 50
    vec = gym.make_vec("LCVG-Sprites-Real-v0", num_envs=2)
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (2, 64, 64, 3)
    vec.close()


@pytest.mark.skipif(not BUNDLED, reason="bundled sprites checkpoint not present")
@pytest.mark.parametrize(
    "learned_id, twin_id, kwargs",
    [
        ("LCVG-Sprites-v0", "LCVG-Sprites-Real-v0", {}),
        ("LCVG-Sprites-Reach-v0", "LCVG-Sprites-Reach-Real-v0", {}),
        ("LCVG-Sprites-v0", "LCVG-Sprites-Real-v0", {"num_objects": 2, "control": "affine"}),
    ],
)
def test_spaces_and_info_keys_are_the_learned_envs(learned_id: str, twin_id: str, kwargs):
    learned = gym.make(learned_id, **kwargs)
    twin = gym.make(twin_id, **kwargs)
    assert learned.action_space == twin.action_space
    assert learned.observation_space == twin.observation_space
    _, info_l = learned.reset(seed=0)
    _, info_t = twin.reset(seed=0)
    assert set(info_l) == set(info_t)
    for key in info_l:
        assert type(info_l[key]) is type(info_t[key]), key
        if isinstance(info_l[key], np.ndarray):
            assert info_l[key].shape == info_t[key].shape and info_l[key].dtype == info_t[key].dtype
    action = learned.action_space.sample() * 0
    *_, info_l = learned.step(action)
    *_, info_t = twin.step(action)
    assert set(info_l) == set(info_t)


@pytest.mark.skipif(not BUNDLED, reason="bundled sprites checkpoint not present")
def test_paired_reset_gives_the_twin_frame_and_matches_objects() -> None:
    learned = gym.make("LCVG-Sprites-Reach-v0", num_objects=2, tracking="carry")
    twin = gym.make("LCVG-Sprites-Reach-Real-v0", num_objects=2)
    scene, _ = sample_scene(SceneConfig(objects=(2, 2), shapes=("disc", "square")),
                            np.random.default_rng(1))
    # object 1 is the larger, so the area order is (1, 0): the matching must follow the learned
    # env's own order, whatever it is
    poses = Poses.from_angles([[14.0, 16.0], [48.0, 46.0]], [0.3, 1.0], [6.0, 9.0])
    (l_obs, l_info), (t_obs, t_info) = paired_reset(
        learned, twin, seed=0, options={"scene": (scene, poses)}
    )
    real = twin.unwrapped
    # the learned env starts from the twin's frame (before any generation)
    np.testing.assert_array_equal(learned.unwrapped.simulator.frames_uint8()[0].cpu().numpy(),
                                  real.frame)
    lc, tc = l_info["centroids"], t_info["centroids"]
    distance = np.linalg.norm(lc[:, None] - tc[None], axis=-1)  # (learned k, twin j)
    assert (distance.argmin(axis=1) == np.arange(2)).all()
    assert np.diag(distance).max() < 0.1
    np.testing.assert_array_equal(l_info["target"], t_info["target"])
    np.testing.assert_array_equal(t_obs["target"], l_obs["target"])
    # the twin's object k is the scene object nearest to the learned object k
    expected = [int(np.argmin(np.linalg.norm((2 * poses.centers + 1) / 64 - 1 - c, axis=-1)))
                for c in lc]
    assert real.controlled.tolist() == expected


def test_match_objects_reorders() -> None:
    env = SpritesRealEnv(num_objects=2, task="reach", observation_keys=REACH_KEYS, noise=False)
    scene, _ = sample_scene(SceneConfig(objects=(3, 3)), np.random.default_rng(0))
    poses = Poses.from_angles([[12, 12], [50, 50], [12, 50]], [0, 0, 0], [9, 8, 5])
    _, info = env.reset(seed=0, options={"scene": (scene, poses)})
    assert env.controlled.tolist() == [0, 1]
    targets = info["target"]
    order = env.match_objects(info["centroids"][::-1])
    assert order.tolist() == [1, 0] and env.controlled.tolist() == [1, 0]
    obs, info2 = env.observe()
    np.testing.assert_allclose(info2["centroids"], info["centroids"][::-1])
    np.testing.assert_array_equal(info2["target"], targets)  # targets stay with the slots
    # a learned centroid next to the third (uncontrolled) object picks it
    small = (2 * np.array([12.0, 50.0]) + 1) / 64 - 1
    assert env.match_objects(np.stack([info["centroids"][0], small])).tolist() == [0, 2]
    with pytest.raises(ValueError, match="centroids"):
        env.match_objects(np.zeros(3))


def test_match_objects_lost_object_does_not_steer() -> None:
    # scene object 1 lies between the frame centre and object 0: a lost object's centroid
    # (the centre, (0, 0)) is as close to object 0 through object 1 as directly, so only
    # `present` keeps the found object on object 1
    env = SpritesRealEnv(num_objects=2, noise=False)
    scene, _ = sample_scene(SceneConfig(objects=(2, 2), shapes=("disc", "disc")),
                            np.random.default_rng(0))
    poses = Poses.from_angles([[10.0, 10.0], [21.0, 21.0]], [0.0, 0.0], [4.0, 5.0])
    env.reset(seed=0, options={"scene": (scene, poses)})
    found = np.stack([(2 * poses.centers[1] + 1) / 64 - 1, np.zeros(2)])
    assert env.match_objects(found, present=np.array([True, False])).tolist() == [1, 0]
    assert env.match_objects(found[::-1].copy(), present=np.array([False, True])).tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"present must be a bool array \(2,\)"):
        env.match_objects(found, present=[1, 0])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"style": "fancy"}, ValueError, r"style must be one of \('classic', 'varied'\)"),
        ({"num_objects": 7}, ValueError, "more than a 'classic' scene can hold"),
        ({"num_objects": 2, "scene_objects": (1, 3)}, ValueError, "at least num_objects=2"),
        ({"control": "mask"}, ValueError, "'position' or 'affine'"),
        ({"num_objects": 0}, ValueError, "num_objects"),
        ({"observation_keys": ("frame", "target")}, ValueError, "target"),
        ({"scene_config": "big"}, TypeError, "SceneConfig"),
        ({"render_mode": "human"}, ValueError, "render_mode"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        SpritesRealEnv(**kwargs)


def test_bad_reset_options_and_step_before_reset() -> None:
    env = SpritesRealEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"unknown reset option\(s\) \['frame'\]"):
        env.reset(options={"frame": np.zeros((64, 64, 3), np.uint8)})
    with pytest.raises(TypeError, match="Scene, Poses"):
        env.reset(options={"scene": "x"})
    scene, poses = sample_scene(SceneConfig(size=32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="32x32"):
        env.reset(options={"scene": (scene, poses)})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, np.float32))


@pytest.mark.parametrize("num_objects", [2.5, "2", True])
def test_num_objects_must_be_an_int(num_objects: object) -> None:
    with pytest.raises(TypeError, match=rf"num_objects must be an int >= 1, got {num_objects!r}"):
        SpritesRealEnv(num_objects=num_objects)
    with pytest.raises(TypeError, match="num_objects must be an int >= 1"):
        gym.make("LCVG-Sprites-Real-v0", num_objects=num_objects)
    assert SpritesRealEnv(num_objects=np.int64(2)).action_space.shape == (4,)


def test_closed_options_complex_actions_and_objects_found() -> None:
    env = SpritesRealEnv(num_objects=2)
    with pytest.raises(TypeError, match="options must be a dict or None, got tuple"):
        env.reset(options=(("scene", None),))
    _, info = env.reset(seed=0)
    assert info["objects_found"] == int(info["present"].sum()) == 2
    with pytest.raises(TypeError, match="complex"):
        env.step(np.zeros(4, np.complex128))
    env.close()
    env.close()
    with pytest.raises(RuntimeError, match=r"SpritesRealEnv\.step\(\) called after close"):
        env.step(np.zeros(4, np.float32))
    with pytest.raises(RuntimeError, match=r"SpritesRealEnv\.reset\(\) called after close"):
        env.reset(seed=0)
