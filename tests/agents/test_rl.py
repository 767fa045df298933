"""lcvg-rl: configs and flags, the agent's view, frame-backed rewards, train/resume, eval."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.rl import cli
from agents.rl.config import MAX_STEP_PX, EvalConfig, TrainConfig
from agents.rl.envs import is_twin, learned_id, make_train_venv, twin_id
from agents.rl.frame_backed import FrameBackedReach, frame_agreement, simulator_of
from agents.rl.wrappers import (
    ReachObservation,
    ScaledMoves,
    move_scale,
    reach_features,
    world_of,
)
from lcvg_env.configs import config_from_args, parse_args
from lcvg_env.env import LCVGEnv
from lcvg_env.registration import register_envs

REACH = "LCVG-Sprites-Reach-v0"
REAL = "LCVG-Sprites-Reach-Real-v0"


def tiny_flags(tiny: dict) -> list[str]:
    """Flags that put a command on the tiny checkpoint with short episodes."""
    return ["--checkpoint", tiny["checkpoint"], "--start-frames", tiny["start_frames"],
            "--device", "cpu", "--max-episode-steps", "6"]


def run_cli(argv: list[str], capsys) -> dict:
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_flags_follow_the_config_fields(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--n-steps" in text and "--frame-backed" in text and "--net-arch" in text
    assert "PPO: steps per environment between updates" in text and "{ppo,sac}" in text
    args = parse_args(cli._parser(), ["train", "--n-steps", "32", "--net-arch", "16,8",
                                      "--frame-backed", "false"])
    config = config_from_args(TrainConfig, args)
    assert config.n_steps == 32 and config.net_arch == (16, 8) and not config.frame_backed
    assert config.envs == TrainConfig().envs  # flags left out keep the defaults
    with pytest.raises(SystemExit):
        cli.main(["train", "--algo", "dqn"])
    assert "dqn" in capsys.readouterr().err


def test_configs_check_values_and_round_trip(tmp_path: Path) -> None:
    config = TrainConfig(algo="sac", net_arch=(32,), steps=100)
    assert TrainConfig.load(config.save(tmp_path / "c.json")) == config
    with pytest.raises(ValueError, match="algo"):
        TrainConfig(algo="dqn")
    with pytest.raises(ValueError, match="envs"):
        TrainConfig(envs=0)
    with pytest.raises(ValueError, match="episodes"):
        EvalConfig(episodes=0)
    (tmp_path / "bad.json").write_text(json.dumps({"stepz": 1}))
    with pytest.raises(ValueError, match="stepz"):
        TrainConfig.load(tmp_path / "bad.json")


def test_id_pairs() -> None:
    register_envs()
    assert twin_id(REACH) == REAL and learned_id(REAL) == REACH
    assert is_twin(REAL) and not is_twin(REACH)
    with pytest.raises(ValueError, match="twin"):
        twin_id("LCVG-BAIR-v0")
    with pytest.raises(ValueError, match="unknown"):
        twin_id("Nope-v0")


def test_agent_view_is_the_same_in_both_worlds(tiny: dict, one_thread) -> None:
    register_envs()
    learned = LCVGEnv(task="reach", observation_keys=("frame", "centroids", "target"),
                      max_episode_steps=5, **tiny)
    real = gym.make(REAL)
    for env in (learned, real):
        view = ScaledMoves(ReachObservation(env), MAX_STEP_PX)
        check_env(view, skip_render_check=True)
        assert view.observation_space.shape == (4,)
        full_px = 0.125 * world_of(env).resolution[1] / 2  # ActionRanges.max_translation
        assert view.scale == pytest.approx(MAX_STEP_PX / full_px)
    obs = {"centroids": np.array([0.1, 0.2], np.float32), "target": np.array([2.0, -0.5])}
    np.testing.assert_allclose(reach_features(obs), [0.1, 0.2, 1.0, -0.5])
    with pytest.raises(ValueError, match="centroids"):
        reach_features({"frame": np.zeros((4, 4, 3))})
    with pytest.raises(ValueError, match="position"):
        move_scale(SimpleNamespace(control="affine"), 2.0)


class FakeSimulator:
    """Frames, tracked objects and a mask network M, as the frame-backed test reads them."""

    def __init__(self, objects: torch.Tensor, segmentation: torch.Tensor) -> None:
        self.num_envs = objects.shape[0]
        self.objects = objects
        # frame i holds the value i, so that M's mask of a frame is found by its index
        self.frames = torch.arange(objects.shape[0], dtype=torch.float32).view(-1, 1, 1, 1
                                                                               ).expand(
            -1, 3, *objects.shape[2:])
        self.threshold = 0.5
        self.seen: list[int] = []  # frames M was run on

        def binary_mask(frames: torch.Tensor, threshold: float) -> torch.Tensor:
            rows = frames[:, 0, 0, 0].long()
            self.seen.extend(rows.tolist())
            return segmentation[rows]

        self.model = SimpleNamespace(binary_mask=binary_mask)


def test_frame_agreement_counts_the_covered_fraction() -> None:
    objects = torch.zeros(3, 1, 8, 8)
    objects[:, 0, 2:6, 2:6] = 1.0  # 16 pixels each
    segmentation = torch.zeros(3, 1, 8, 8)
    segmentation[0, 0, 2:6, 2:4] = 1.0  # covers 8 of 16: half
    segmentation[1, 0, 2:6, 2:3] = 1.0  # 4 of 16
    sim = FakeSimulator(objects, segmentation)
    assert frame_agreement(sim, cover=0.5)[:, 0].tolist() == [True, False, False]
    assert frame_agreement(sim, cover=0.25)[:, 0].tolist() == [True, True, False]
    sim.seen.clear()
    assert frame_agreement(sim, 0.5, indices=np.array([2, 0]))[:, 0].tolist() == [False, True]
    assert sim.seen == [2, 0]  # M ran on those two frames only


def test_frame_backed_reach_needs_the_frame_for_success() -> None:
    objects = torch.ones(2, 1, 4, 4)
    segmentation = torch.zeros(2, 1, 4, 4)
    segmentation[0] = 1.0  # env 0: M sees the object; env 1: M sees nothing
    start = np.zeros((2, 1, 2), np.float32)
    on_target = np.full((2, 1, 2), 0.5, np.float32)
    present = np.ones((2, 1), bool)
    rewards = {}
    for enforce in (True, False):
        task = FrameBackedReach(2, 1, (4, 4), enforce=enforce)
        with pytest.raises(RuntimeError, match="attach"):
            task.step(on_target, present)
        task.attach(FakeSimulator(objects, segmentation))
        task.reset(np.arange(2), start, present, [np.random.default_rng(0)] * 2,
                   [{"target": [[0.5, 0.5]]}] * 2)
        rewards[enforce], success = task.step(on_target, present)
        info = task.info()
        assert info["claimed_success"].tolist() == [True, True]
        assert info["frame_backed"].tolist() == [True, False]
        assert success.tolist() == ([True, False] if enforce else [True, True])
        assert info["is_success"].tolist() == success.tolist()
    progress = float(np.hypot(0.5, 0.5))
    np.testing.assert_allclose(rewards[True], [progress + 1.0, progress])
    np.testing.assert_allclose(rewards[False], [progress + 1.0, progress + 1.0])
    with pytest.raises(ValueError, match="simulator runs"):
        FrameBackedReach(3, 1, (4, 4)).attach(FakeSimulator(objects, segmentation))


def test_frame_backed_reach_in_the_batched_training_env(tiny: dict, one_thread) -> None:
    config = TrainConfig(envs=2, checkpoint=tiny["checkpoint"], start_frames=tiny["start_frames"],
                         device="cpu", max_episode_steps=3)
    venv = make_train_venv(config)
    obs = venv.reset()
    assert obs.shape == (2, 4) and venv.action_space.shape == (2,)
    for _ in range(4):  # through an episode end and its same-step reset
        obs, _, _, infos = venv.step(np.ones((2, 2), np.float32))
    assert all(isinstance(info["frame_backed"], bool) for info in infos)
    assert all(info["is_success"] <= info["claimed_success"] for info in infos)
    assert simulator_of(venv.unwrapped).num_envs == 2
    venv.close()


def test_a_twin_id_trains_in_dummy_vec_envs_with_the_same_view() -> None:
    venv = make_train_venv(TrainConfig(env=REAL, envs=2, max_episode_steps=2))
    assert isinstance(venv.unwrapped, DummyVecEnv) and venv.num_envs == 2
    obs = venv.reset()
    assert obs.shape == (2, 4)
    for _ in range(3):  # through the end of an episode: the terminal observation is converted
        obs, _, dones, infos = venv.step(np.ones((2, 2), np.float32))
        for done, info in zip(dones, infos):
            assert not done or info["terminal_observation"].shape == (4,)
    assert venv.venv.scale == pytest.approx(MAX_STEP_PX / 4.0)  # 4 px: the twin's full move


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, tiny: dict) -> Path:
    """A 128-step PPO run on the tiny checkpoint (evaluated at 64 and 128 steps)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("rl") / "run"
    argv = ["train", "--steps", "128", "--envs", "2", "--n-steps", "32", "--batch-size", "32",
            "--n-epochs", "1", "--net-arch", "8", "--eval-every", "64", "--eval-episodes", "2",
            "--out", str(out), *tiny_flags(tiny)]
    try:
        assert cli.main(argv) == 0
    finally:
        torch.set_num_threads(before)
    return out


def test_training_writes_policy_config_curve(trained_run: Path) -> None:
    for name in ("config.json", "last.zip", "best.zip", "curve.png", "evaluations.json",
                 "state.json", "logs/session-1/progress.csv"):
        assert (trained_run / name).is_file(), name
    config = TrainConfig.load(trained_run / "config.json")
    assert config.steps == 128 and config.net_arch == (8,)
    history = json.loads((trained_run / "evaluations.json").read_text())
    assert [entry["step"] for entry in history] == [64, 128]
    assert set(history[0]) >= {"learned", "real"}
    assert "frame_confirmed_success_rate" in history[0]["learned"]
    assert "frame_confirmed_success_rate" not in history[0]["real"]


def test_training_resumes_where_it_stopped(trained_run: Path, tmp_path: Path, capsys,
                                           one_thread) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for path in trained_run.rglob("*"):
        if path.is_file():
            (run / path.relative_to(trained_run)).parent.mkdir(parents=True, exist_ok=True)
            (run / path.relative_to(trained_run)).write_bytes(path.read_bytes())
    summary = run_cli(["train", "--resume", str(run), "--steps", "192"], capsys)
    assert summary["steps"] == 192
    assert TrainConfig.load(run / "config.json").steps == 192
    history = json.loads((run / "evaluations.json").read_text())
    assert [entry["step"] for entry in history] == [64, 128, 192]
    assert (run / "logs" / "session-2").is_dir()
    assert cli.main(["train", "--out", str(run), "--steps", "8"]) == 2  # not over a run
    assert "--resume" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(tmp_path / "none")]) == 2


@pytest.mark.parametrize("policy", ["scripted:reach", "scripted:random", "zip"])
def test_eval_prints_one_json_object(policy: str, trained_run: Path, tiny: dict, capsys,
                                     one_thread) -> None:
    spec = str(trained_run / "best.zip") if policy == "zip" else policy
    summary = run_cli(["eval", "--policy", spec, "--env", REACH, "--episodes", "3",
                       "--batch", "2", *tiny_flags(tiny)], capsys)
    assert summary["episodes"] == 3 and summary["policy"] == spec
    for key in ("success_rate", "lost_rate", "frame_confirmed_success_rate"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["frame_confirmed_success_rate"] <= summary["success_rate"]
    assert summary["mean_final_distance_px"] is None or summary["mean_final_distance_px"] >= 0


def test_a_sim_trained_policy_runs_in_the_twin(trained_run: Path, capsys) -> None:
    summary = run_cli(["eval", "--policy", str(trained_run / "best.zip"), "--env", REAL,
                       "--episodes", "2", "--max-episode-steps", "6"], capsys)
    assert summary["env"] == REAL and summary["episodes"] == 2
    assert "frame_confirmed_success_rate" not in summary
    assert 0.0 <= summary["success_rate"] <= 1.0 and 0.0 <= summary["lost_rate"] <= 1.0


BUNDLED_POLICY = Path(__file__).resolve().parents[2] / "agents" / "assets" / "reach_ppo.zip"


@pytest.mark.skipif(not BUNDLED_POLICY.is_file(), reason="bundled reach policy missing")
def test_the_bundled_policy_reaches_in_the_real_twin(capsys) -> None:
    """The PPO policy trained only in the learned simulator, judged in the true world."""
    summary = run_cli(["eval", "--policy", str(BUNDLED_POLICY), "--env", REAL,
                       "--episodes", "16", "--seed", "4242", "--threads", "1"], capsys)
    assert summary["episodes"] == 16 and summary["success_rate"] >= 0.85
    assert summary["lost_rate"] == 0.0


def test_eval_names_a_bad_policy(capsys) -> None:
    assert cli.main(["eval", "--policy", "scripted:fly", "--env", REAL, "--episodes", "1"]) == 2
    assert "scripted:fly" in capsys.readouterr().err


def test_sac_trains_saves_its_buffer_and_is_evaluated(tiny: dict, tmp_path: Path, capsys,
                                                      one_thread) -> None:
    out = tmp_path / "sac"
    summary = run_cli(["train", "--algo", "sac", "--steps", "32", "--envs", "2",
                       "--learning-starts", "8", "--batch-size", "8", "--net-arch", "8",
                       "--eval-every", "32", "--eval-episodes", "1", "--out", str(out),
                       *tiny_flags(tiny)], capsys)
    assert summary["steps"] == 32 and (out / "replay_buffer.pkl").is_file()
    result = run_cli(["eval", "--policy", str(out / "last.zip"), "--env", REAL,
                      "--episodes", "1", "--max-episode-steps", "3"], capsys)
    assert result["episodes"] == 1
