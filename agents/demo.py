"""Demo: a reach policy in ``LCVG-Sprites-Reach-v0`` (``make demo``).

The scripted ``ReachPolicy`` by default; ``--policy agents/assets/reach_ppo.zip`` runs the
bundled PPO policy trained only in the learned simulator (``lcvg-rl``).

Runs 20 episodes side by side in the natively batched vector environment (one network call per
step for all of them), each started from a scene of the ground-truth twin
(``LCVG-Sprites-Reach-Real-v0``, ``lcvg_env.world``) and mirrored there action for action. It
writes a video of the episodes (generated frames with the mask overlay, each object's centroid
and its target) and prints three success rates: the simulator's own (mask centroid within the
task's radius of the target), the one confirmed by the frame (the object found in the generated
frame by its true colour, ``lcvg_env.world.locate``, within that radius), and the twin's (the
real object there), with the mean final distance and the simulator's frames per second.

    python -m agents.demo [--episodes 20] [--out runs/demo/reach.gif] [--seed 0] [--style varied]
                          [--policy scripted:reach|agents/assets/reach_ppo.zip]

The flags are the fields of :class:`DemoConfig` (``--print-config`` prints the resolved config
and exits). Exits with status 1 (and says so) when the bundled checkpoint is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from agents.rl.envs import reset_with_twins
from agents.rl.policies import load_policy
from lcvg_env import render as rnd
from lcvg_env.configs import check_choices, check_ints, parse_config
from lcvg_env.env import CheckpointNotFoundError
from lcvg_env.registration import SPRITES_CHECKPOINT, register_envs
from lcvg_env.tracking import Tracking
from lcvg_env.world.locate import find_objects, mask_centroids
from lcvg_env.world.scene import Style
from lcvg_env.world.twin import SpritesRealEnv

ENV_ID = "LCVG-Sprites-Reach-v0"


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs (``python -m agents.demo``)."""

    episodes: int = 20
    """Episodes, run side by side in one batched environment."""
    out: str = "runs/demo/reach.gif"
    """Video of the episodes (.gif or .mp4)."""
    seed: int = 0
    """Seed of the first episode (episode i starts from the twin's scene of seed + i)."""
    device: str = "auto"
    """Torch device: "auto", "cpu", "cuda"..."""
    checkpoint: str | None = None
    """Checkpoint instead of the bundled one."""
    max_steps: int | None = None
    """Episode length limit (None: the registered one, 50)."""
    scale: int = 2
    """Upscaling of each episode's tile."""
    fps: float = 8.0
    """Video frames per second."""
    tracking: Tracking | None = None
    """How the simulator follows the objects (None: the id's default)."""
    style: Style = "varied"
    """Style of the twin's scenes the episodes start from."""
    policy: str = "scripted:reach"
    """The policy: scripted:reach, scripted:random, or a saved lcvg-rl (SB3) policy zip such as
    agents/assets/reach_ppo.zip (PPO trained only in the learned simulator)."""

    def __post_init__(self) -> None:
        """Validate the choices and counts, naming the offending value."""
        check_choices(self)
        check_ints(self, {"episodes": 1, "max_steps": 1, "scale": 1})


def _border(frame: np.ndarray, color: tuple[int, int, int], width: int = 2) -> np.ndarray:
    out = frame.copy()
    out[:width], out[-width:], out[:, :width], out[:, -width:] = color, color, color, color
    return out


def frame_confirmed(generated: np.ndarray, twin: SpritesRealEnv, targets_px: np.ndarray,
                    radius_px: float) -> bool:
    """Whether every controlled object, found in ``generated`` by its true colour, is on target.

    ``twin`` holds the true state after the same actions; ``targets_px`` (K, 2) pixel targets.
    """
    controlled = twin.true_masks()
    others = twin.other_masks()
    found = find_objects(generated[None], twin.frame[None], controlled[None], others[None],
                         twin.background()[None])[0]
    centres, area = mask_centroids(found)
    distance = np.linalg.norm(centres - targets_px, axis=-1)
    return bool(np.all((area > 0) & (distance <= radius_px)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns 0, or 1 when the bundled checkpoint is missing."""
    parser = argparse.ArgumentParser(
        prog="python -m agents.demo", description=__doc__.split("\n")[0]
    )
    config, _ = parse_config(parser, DemoConfig, argv)
    if config is None:  # --print-config
        return 0

    register_envs()
    try:
        env = _make_env(config)
    except CheckpointNotFoundError as error:
        print(
            f"The demo needs the bundled sprites checkpoint ({SPRITES_CHECKPOINT}), which is "
            f"missing from this installation.\n{error}",
            file=sys.stderr,
        )
        return 1

    policy = load_policy(config.policy, env, seed=config.seed)
    twins, obs = _reset_paired(env, config)
    run = _run_episodes(env, policy, twins, obs)
    env.close()
    path = rnd.save_video(config.out, run.video + [run.video[-1]] * 4, fps=config.fps)
    _report(config, run, env.unwrapped.core, path)  # type: ignore[attr-defined]
    return 0


def _make_env(config: DemoConfig) -> gym.vector.VectorEnv:
    """Make the batched reach environment of ``config`` (one episode per env, no autoreset)."""
    kwargs = {"device": config.device, "render_scale": config.scale}
    if config.tracking is not None:
        kwargs["tracking"] = config.tracking
    if config.checkpoint is not None:
        kwargs["checkpoint"] = config.checkpoint
    if config.max_steps is not None:
        kwargs["max_episode_steps"] = config.max_steps
    return gym.make_vec(
        ENV_ID,
        num_envs=config.episodes,
        vectorization_mode="vector_entry_point",
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
        render_mode="rgb_array",
        **kwargs,
    )


def _reset_paired(env: gym.vector.VectorEnv, config: DemoConfig,
                  ) -> tuple[list[SpritesRealEnv], Any]:
    """Reset one twin per episode (seed + i) and the learned env from the twins' frames.

    Each twin's object k and its target are then the learned env's. Returns the twins and
    the learned env's observations.
    """
    core = env.unwrapped.core  # type: ignore[attr-defined]
    twins = [SpritesRealEnv(task="reach", num_objects=core.num_objects, style=config.style,
                            size=core.resolution[0]) for _ in range(config.episodes)]
    obs, _ = reset_with_twins(env, twins, config.seed)
    return twins, obs


@dataclass(frozen=True)
class _DemoRun:
    """How the demo's episodes ended (arrays of one entry per episode) and its video."""

    success: np.ndarray
    """bool, the simulator's own success."""
    confirmed: np.ndarray
    """bool, success confirmed by the generated frame (:func:`frame_confirmed`)."""
    real: np.ndarray
    """bool, the twin's success after the same actions."""
    final_px: np.ndarray
    """float64 mean final distance to target in pixels; NaN where an object was lost."""
    lengths: np.ndarray
    """int64 episode lengths."""
    video: list[np.ndarray]
    """Tiled frames of all episodes, from the reset on."""
    step_seconds: float
    """Time spent in the learned env's step calls."""
    steps: int
    """Batched steps taken (until every episode ended)."""


def _run_episodes(env: gym.vector.VectorEnv, policy: Any, twins: list[SpritesRealEnv],
                  obs: Any) -> _DemoRun:
    """Step the learned env and its twins with the policy's actions until every episode ends."""
    core = env.unwrapped.core  # type: ignore[attr-defined]
    n = len(twins)
    radius_px = core.task.success_radius * core.resolution[1] / 2
    confirmed = np.zeros(n, dtype=bool)
    real = np.zeros(n, dtype=bool)
    done = np.zeros(n, dtype=bool)
    success = np.zeros(n, dtype=bool)
    final_px = np.zeros(n, dtype=np.float64)
    lengths = np.zeros(n, dtype=np.int64)
    shown = list(env.render() or ())
    video = [rnd.tile(shown, columns=min(n, 5))]
    step_seconds, steps = 0.0, 0
    while not done.all():
        actions, _ = policy.predict(obs)
        start = time.perf_counter()
        obs, _, terminated, truncated, info = env.step(actions)
        step_seconds += time.perf_counter() - start
        steps += 1
        real_info = [twins[i].step(actions[i])[4] if not done[i] else None for i in range(n)]
        ended = (terminated | truncated) & ~done
        frames = env.render() or ()
        for i in np.flatnonzero(~done):
            shown[i] = frames[i]
        for i in np.flatnonzero(ended):
            success[i] = bool(info["is_success"][i])
            seen = bool(np.all(info["present"][i]))  # a lost object's distance is a guess
            final_px[i] = float(np.mean(info["distance_px"][i])) if seen else np.nan
            lengths[i] = int(info["step"][i])
            targets_px = rnd.to_pixels(info["target"][i], core.resolution)
            confirmed[i] = success[i] and frame_confirmed(obs["frame"][i], twins[i],
                                                          targets_px, radius_px)
            real[i] = bool(real_info[i]["is_success"])
            shown[i] = _border(frames[i], (60, 220, 60) if success[i] else (230, 60, 60))
        done |= ended
        video.append(rnd.tile(shown, columns=min(n, 5)))
    return _DemoRun(success, confirmed, real, final_px, lengths, video, step_seconds, steps)


def _report(config: DemoConfig, run: _DemoRun, core: Any, path: Any) -> None:
    """Print the demo's rates, distance and speed, then its one-line JSON summary."""
    n = len(run.success)
    success, confirmed, real = run.success, run.confirmed, run.real
    height, width = core.resolution
    fps = n * run.steps / run.step_seconds if run.step_seconds > 0 else float("nan")
    lost = int(np.isnan(run.final_px).sum())
    mean_px = float(np.nanmean(run.final_px)) if lost < n else float("nan")
    device = core.device
    summary = {
        "env": ENV_ID,
        "episodes": n,
        "policy": config.policy,
        "success_rate": float(success.mean()),
        "frame_confirmed_success_rate": float(confirmed.mean()),
        "real_success_rate": float(real.mean()),
        "style": config.style,
        "mean_final_distance_px": None if np.isnan(mean_px) else round(mean_px, 3),
        "episodes_ending_with_a_lost_object": lost,
        "mean_episode_length": float(run.lengths.mean()),
        "frames_per_second": round(fps, 1),
        "batch": n,
        "device": str(device),
        "video": str(path),
    }
    print(f"{ENV_ID}: {n} episodes of {config.policy} ({height}x{width} frames)")
    print(f"success rate: {success.mean():.2f} ({int(success.sum())}/{n}; the simulator's masks)")
    print(f"confirmed by the frame: {confirmed.mean():.2f} ({int(confirmed.sum())}/{n}; the "
          "object found by its colour on target)")
    print(f"in the real twin: {real.mean():.2f} ({int(real.sum())}/{n}; same actions)")
    print(
        f"mean final distance: {mean_px:.2f} px (mask centroid to target"
        + (f"; {lost} episode(s) ended with an object's mask lost, not counted)" if lost else ")")
    )
    print(f"frames/s: {fps:.1f} (env.step, batch of {n} environments on {device})")
    print(f"video: {path} ({len(run.video)} frames)")
    print(json.dumps(summary))


if __name__ == "__main__":
    raise SystemExit(main())
