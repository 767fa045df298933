"""Training a reach agent with stable-baselines3 (``lcvg-rl train``), resumable.

``train(config)`` builds the training VecEnv (``agents.rl.envs.make_train_venv``), a PPO or
SAC ``MlpPolicy`` on the agent's view (``agents.rl.wrappers``), and learns for
``config.steps`` environment steps. Every ``eval_every`` steps ``PeriodicEvaluation``
evaluates the deterministic policy in the learned environment AND in its ground-truth twin
(the same episodes each time, seeds ``seed + EVAL_SEED_OFFSET + i``), then saves:

- ``last.zip`` and ``state.json`` (steps done, best score, next evaluation): what ``resume``
  continues from (SAC also ``replay_buffer.pkl``);
- ``best.zip``: the policy with the best LEARNED-environment success so far (frame-confirmed
  success when ``frame_backed``; ties go to the smaller mean final distance there, since a
  policy that stops at the edge of the success radius is the fragile one). The twin is the
  judge, not the coach: its numbers are logged for the curve and never used to choose;
- ``evaluations.json`` (every evaluation's summaries) and ``curve.png`` (success against steps,
  learned and real).

The run folder also holds ``config.json`` and ``logs/session-N/`` (SB3's ``progress.csv``, the
evaluations under ``eval_learned/*`` and ``eval_real/*``, plus TensorBoard event files when
tensorboard is importable).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from agents.rl.config import TrainConfig
from agents.rl.curve import plot_curve
from agents.rl.envs import learned_id, make_train_venv, twin_id
from agents.rl.evaluate import run_episodes
from agents.rl.policies import ALGORITHMS, SB3ReachPolicy
from agents.rl.wrappers import move_scale, world_of

EVAL_SEED_OFFSET = 1_000_000
"""Evaluation episodes use seeds from ``seed + EVAL_SEED_OFFSET``: apart from training's."""
CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
LAST_MODEL = "last.zip"
BEST_MODEL = "best.zip"
EVALUATIONS_FILE = "evaluations.json"
CURVE_FILE = "curve.png"
REPLAY_BUFFER = "replay_buffer.pkl"


def selection_key(config: TrainConfig) -> str:
    """Name the learned-environment summary entry ``best.zip`` is chosen by."""
    return "frame_confirmed_success_rate" if config.frame_backed else "success_rate"


def build_model(config: TrainConfig, venv: VecEnv) -> BaseAlgorithm:
    """Build a fresh PPO or SAC MlpPolicy for ``venv`` with ``config``'s hyperparameters."""
    common: dict[str, Any] = {
        "learning_rate": config.learning_rate,
        "batch_size": config.batch_size,
        "gamma": config.gamma,
        "seed": config.seed,
        "device": config.policy_device,
        "verbose": 0,
    }
    if config.algo == "ppo":
        return PPO(
            "MlpPolicy", venv, n_steps=config.n_steps, n_epochs=config.n_epochs,
            gae_lambda=config.gae_lambda, ent_coef=config.ent_coef,
            policy_kwargs={"net_arch": list(config.net_arch),
                           "log_std_init": config.log_std_init},
            **common,
        )
    return SAC(
        "MlpPolicy", venv, buffer_size=config.buffer_size,
        learning_starts=config.learning_starts, gradient_steps=config.gradient_steps,
        policy_kwargs={"net_arch": list(config.net_arch)}, **common,
    )


def evaluate_model(model: BaseAlgorithm, config: TrainConfig) -> dict[str, Any]:
    """Summaries of the deterministic policy in the learned env and in its twin."""

    def make_policy(env: Any) -> SB3ReachPolicy:
        return SB3ReachPolicy(model, move_scale(world_of(env), config.max_step_px))

    seed = config.seed + EVAL_SEED_OFFSET
    learned = run_episodes(
        make_policy, learned_id(config.env), config.eval_episodes, seed,
        device=config.device, cover=config.agree_cover, tracking=config.tracking,
        checkpoint=config.checkpoint, start_frames=config.start_frames,
        max_episode_steps=config.max_episode_steps, num_objects=config.num_objects,
    )
    real = run_episodes(make_policy, twin_id(config.env), config.eval_episodes, seed,
                        max_episode_steps=config.max_episode_steps,
                        num_objects=config.num_objects)
    return {"learned": learned, "real": real}


class PeriodicEvaluation(BaseCallback):
    """Evaluate, save ``last.zip``/``best.zip`` and redraw the curve every ``eval_every`` steps.

    Args:
        config: the run's config.
        folder: the run folder.
        state: ``state.json``'s content (``best_score``, ``next_eval``), updated in place.
        history: the evaluations so far (``evaluations.json``), appended to.
    """

    def __init__(self, config: TrainConfig, folder: Path, state: dict[str, Any],
                 history: list[dict[str, Any]]) -> None:
        super().__init__()
        self.config = config
        self.folder = folder
        self.state = state
        self.history = history
        self.started = time.perf_counter()

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.state["next_eval"]:
            self.checkpoint()
        return True

    def checkpoint(self) -> dict[str, Any]:
        """Evaluate now, save the models, state, evaluations and curve; returns the entry."""
        config = self.config
        steps = int(self.model.num_timesteps)
        entry = {"step": steps, **evaluate_model(self.model, config),
                 "wall_s": round(time.perf_counter() - self.started, 1)}
        self.history.append(entry)
        key = selection_key(config)
        score = float(entry["learned"][key])
        distance = float(entry["learned"]["mean_final_distance_px"])
        best = self.state.get("best_score")
        best_distance = self.state.get("best_distance")
        if best is None or score > best or (
                score == best and (best_distance is None or distance < best_distance)):
            self.state.update(best_score=score, best_distance=distance, best_step=entry["step"])
            self.model.save(self.folder / BEST_MODEL)
        every = config.eval_every
        self.state["next_eval"] = (steps // every + 1) * every
        save_progress(self.model, self.folder, self.state, self.history)
        learned, real = entry["learned"], entry["real"]
        for world, summary in (("learned", learned), ("real", real)):  # progress.csv, TensorBoard
            for name, value in summary.items():
                if isinstance(value, int | float) and name != "episodes":
                    self.logger.record(f"eval_{world}/{name}", value)
        self.logger.dump(steps)
        print(f"step {entry['step']}: learned success {learned['success_rate']:.2f} "
              f"(frame-confirmed {learned['frame_confirmed_success_rate']:.2f}), real "
              f"{real['success_rate']:.2f}; best {key} {self.state['best_score']:.2f} at step "
              f"{self.state['best_step']}", flush=True)
        return entry


def save_progress(model: BaseAlgorithm, folder: Path, state: dict[str, Any],
                  history: list[dict[str, Any]]) -> None:
    """Write ``last.zip`` (+ SAC's replay buffer), ``state.json``, evaluations and curve."""
    model.save(folder / LAST_MODEL)
    if isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
        model.save_replay_buffer(folder / REPLAY_BUFFER)
    state["num_timesteps"] = int(model.num_timesteps)
    (folder / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    (folder / EVALUATIONS_FILE).write_text(json.dumps(history, indent=2) + "\n")
    if history:
        steps = [entry["step"] for entry in history]
        series = {
            "learned": [entry["learned"]["success_rate"] for entry in history],
            "learned, frame-confirmed": [
                entry["learned"].get("frame_confirmed_success_rate") for entry in history
            ],
            "real twin": [entry["real"]["success_rate"] for entry in history],
        }
        plot_curve(steps, series, folder / CURVE_FILE)


def _logger_formats() -> tuple[list[str], str]:
    if importlib.util.find_spec("tensorboard") is not None:
        return ["csv", "tensorboard"], "TensorBoard: on (tensorboard --logdir {logs})"
    return ["csv"], ("TensorBoard: not installed (pip install 'lcvg[metrics]'); logging CSV "
                     "to {logs}")


def _progress_bar() -> bool:
    """SB3's progress bar needs tqdm and rich, and only helps on a terminal."""
    have = all(importlib.util.find_spec(name) is not None for name in ("tqdm", "rich"))
    return have and sys.stdout.isatty()


def train(config: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train (or, with ``resume``, continue the run in ``config.out``) up to ``config.steps``.

    Returns a summary: run folder, steps done, best score and step, last evaluation.

    Raises:
        FileNotFoundError: ``resume`` without a saved run in ``config.out``.
        FileExistsError: a new run into a folder that already holds one.
    """
    folder = Path(config.out)
    if resume:
        missing = [name for name in (LAST_MODEL, STATE_FILE) if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"cannot resume {folder}: no {', '.join(missing)} there")
    elif (folder / STATE_FILE).exists():
        raise FileExistsError(
            f"{folder} already holds a run; continue it with --resume {folder} or pick "
            "another --out"
        )
    folder.mkdir(parents=True, exist_ok=True)
    config.save(folder / CONFIG_FILE)
    venv = make_train_venv(config)
    history: list[dict[str, Any]] = []
    state: dict[str, Any] = {"best_score": None, "best_distance": None, "best_step": None,
                             "next_eval": config.eval_every}
    if resume:
        state.update(json.loads((folder / STATE_FILE).read_text()))
        if (folder / EVALUATIONS_FILE).is_file():
            history = json.loads((folder / EVALUATIONS_FILE).read_text())
        model = ALGORITHMS[config.algo].load(folder / LAST_MODEL, env=venv,
                                             device=config.policy_device)
        if (folder / REPLAY_BUFFER).is_file() and isinstance(model, OffPolicyAlgorithm):
            model.load_replay_buffer(folder / REPLAY_BUFFER)
    else:
        model = build_model(config, venv)
    sessions = sorted((folder / "logs").glob("session-*")) if (folder / "logs").is_dir() else []
    logs = folder / "logs" / f"session-{len(sessions) + 1}"
    formats, message = _logger_formats()
    model.set_logger(configure(str(logs), formats))
    print(message.format(logs=logs), flush=True)
    callback = PeriodicEvaluation(config, folder, state, history)
    remaining = config.steps - int(model.num_timesteps)
    if remaining > 0:
        model.learn(remaining, callback=callback, reset_num_timesteps=not resume,
                    progress_bar=_progress_bar())
    if not history or history[-1]["step"] != int(model.num_timesteps):
        callback.init_callback(model)
        callback.checkpoint()
    venv.close()
    last = history[-1]
    return {
        "out": str(folder),
        "steps": int(model.num_timesteps),
        "best_score": state["best_score"],
        "best_step": state["best_step"],
        "selected_by": f"learned {selection_key(config)}",
        "last": {"learned": last["learned"], "real": last["real"]},
        "curve": str(folder / CURVE_FILE),
    }


def as_json(summary: dict[str, Any]) -> str:
    """One-line JSON of a summary (NaN written as null)."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not np.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        return value

    return json.dumps(clean(summary))
