"""Configurations of ``lcvg-rl``: one frozen dataclass per command, documented per field.

Every field becomes a command-line flag of the same name spelled with dashes
(``n_steps`` -> ``--n-steps``); its help text is the string literal written under the field
(``lcvg_env.configs``, the project's config command lines; ``Literal`` fields list their
choices). The defaults are named constants below, chosen for the reach task of
the bundled sprites model (``LCVG-Sprites-Reach-v0``); docs/agents.md says why each one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from lcvg_env.configs import check_choices
from lcvg_env.tracking import ANCHOR_COVER

DEFAULT_ENV = "LCVG-Sprites-Reach-v0"
"""The learned reach environment the agents are trained in."""
MAX_STEP_PX = 2.0
"""Largest object move per step the policy can command, in pixels: the bundled sprites model
was trained on clips whose objects move 1 to 3 pixels a frame (``training.data.sprites``
speed 0.015-0.045 of 64 px), half the action space's full range (4 px); larger moves can leave
the object behind in the generated frame while its mask moves on."""
N_STEPS = 128
"""PPO rollout length per environment: with 8 environments, 1024 transitions (about 20
episodes of 50 steps) per update, so that a CPU-bound simulator still updates the policy
often; larger batches of environments (a GPU) can keep it and gain more episodes."""
NET_ARCH = (64, 64)
"""Hidden layers of the policy and value MLPs: the observation is 4K numbers."""
Tracking = Literal["", "segment", "carry", "anchored"]
"""A learned env's ``tracking`` (``lcvg_env.simulator``); "" keeps the id's registered one."""
TRAIN_RADIUS_PX = 0.0
"""Success radius the policy trains with, in pixels; 0: the id's own (3.2 px at 64x64). A
tighter one (e.g. 2) asks for a margin inside the judged radius; measured, it did not raise the
twin's success of mirrored actions (docs/agents.md), so the default trains at the judged one."""
AGREE_COVER = ANCHOR_COVER
"""Fraction of a tracked object's mask that M's mask of the frame must cover (the simulator's
own "anchored" test)."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run of ``lcvg-rl train`` (saved as ``config.json`` in the run folder)."""

    env: str = DEFAULT_ENV
    """Environment id: a learned id (trained in its batched VecEnv, evaluated there and in its
    -Real- twin) or a twin id (trained in the twin, SB3's DummyVecEnv)."""
    algo: Literal["ppo", "sac"] = "ppo"
    """Algorithm: stable-baselines3's PPO or SAC."""
    steps: int = 200_000
    """Total environment steps (all environments together); on --resume, the new total."""
    envs: int = 8
    """Environments stepped side by side (one batched network call per step when learned)."""
    out: str = "runs/rl"
    """Run folder: config.json, last.zip, best.zip, evaluations.json, curve.png, logs."""
    device: str = "auto"
    """Device of the learned simulator: auto, cpu, cuda."""
    policy_device: str = "cpu"
    """Device of the SB3 policy (a small MLP runs fastest on the CPU)."""
    seed: int = 0
    """Seed of the policy, the training environments and the evaluation episodes."""
    threads: int = 0
    """Torch CPU threads (0: torch's choice; 1 is fastest for small models on a busy machine)."""
    learning_rate: float = 3e-4
    """Adam learning rate (PPO and SAC)."""
    batch_size: int = 256
    """Minibatch size (PPO and SAC)."""
    gamma: float = 0.98
    """Discount: an effective horizon of 50 steps, the reach episode's length."""
    net_arch: tuple[int, ...] = NET_ARCH
    """Hidden layer sizes of the actor and critic MLPs, comma-separated."""
    n_steps: int = N_STEPS
    """PPO: steps per environment between updates."""
    n_epochs: int = 10
    """PPO: passes over each rollout."""
    gae_lambda: float = 0.95
    """PPO: GAE lambda."""
    ent_coef: float = 0.0
    """PPO: entropy bonus."""
    log_std_init: float = -0.5
    """PPO: initial log standard deviation of the Gaussian policy; -0.5 explores with a
    standard deviation of 0.6 of the (scaled) move range."""
    buffer_size: int = 100_000
    """SAC: replay buffer size (transitions)."""
    learning_starts: int = 1_000
    """SAC: random steps before learning starts."""
    gradient_steps: int = 1
    """SAC: gradient steps per environment step of the whole batch."""
    max_step_px: float = MAX_STEP_PX
    """Largest move per step in pixels: an action of 1 moves an object this far (see
    MAX_STEP_PX in agents/rl/config.py)."""
    frame_backed: bool = True
    """Learned env: success and its bonus count only where M's mask of the generated frame
    confirms every tracked object mask (agents.rl.frame_backed)."""
    agree_cover: float = AGREE_COVER
    """Fraction of each tracked mask M's mask must cover for the frame to back it."""
    eval_every: int = 10_000
    """Evaluate (learned env and twin) every this many steps; the models are saved then."""
    eval_episodes: int = 32
    """Episodes of each periodic evaluation (per environment: learned and twin)."""
    tracking: Tracking = ""
    """Learned env: how the simulator follows objects (segment, carry, anchored); empty: the
    id's registered default."""
    checkpoint: str = ""
    """Learned env: generator checkpoint instead of the id's (path or name)."""
    start_frames: str = ""
    """Learned env: first frames instead of the id's (folder, .npz, image)."""
    max_episode_steps: int = 0
    """Episode length limit; 0: the id's registered one."""
    num_objects: int = 0
    """Controlled objects K (one action row and one target each); 0: the id's default (1)."""
    train_radius_px: float = TRAIN_RADIUS_PX
    """Success radius of the training episodes, in pixels (0: the id's own, 3.2 px at 64x64);
    evaluations always use the id's own (see TRAIN_RADIUS_PX)."""

    def __post_init__(self) -> None:
        """Validate the values, naming the bad one."""
        check_choices(self)
        for name in ("steps", "envs", "batch_size", "n_steps", "n_epochs", "buffer_size",
                     "gradient_steps", "eval_every", "eval_episodes"):
            _check_int(self, name, 1)
        for name in ("learning_starts", "max_episode_steps", "threads", "num_objects"):
            _check_int(self, name, 0)
        if not self.net_arch or any(int(n) < 1 for n in self.net_arch):
            raise ValueError(f"net_arch must list layer sizes >= 1, got {self.net_arch!r}")
        object.__setattr__(self, "net_arch", tuple(int(n) for n in self.net_arch))
        if not self.train_radius_px >= 0:
            raise ValueError(f"train_radius_px must be >= 0, got {self.train_radius_px!r}")
        if not self.max_step_px > 0:
            raise ValueError(f"max_step_px must be > 0, got {self.max_step_px!r}")
        if not 0 < self.agree_cover <= 1:
            raise ValueError(f"agree_cover must be in (0, 1], got {self.agree_cover!r}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the config as JSON to ``path``; returns the path."""
        out = Path(path)
        out.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainConfig:
        """Read a config written by ``save`` (unknown keys raise, naming them)."""
        data = json.loads(Path(path).read_text())
        return cls(**_known(cls, data, path))


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation of ``lcvg-rl eval``: episodes of a policy, summarised as JSON."""

    policy: str = "scripted:reach"
    """Policy: a saved SB3 zip (its run's config.json, if beside it, gives max_step_px),
    scripted:reach or scripted:random."""
    env: str = DEFAULT_ENV
    """Environment id (learned or twin)."""
    episodes: int = 32
    """Episodes, run side by side in batches of --batch."""
    seed: int = 0
    """Seed of the first episode (episode i uses seed + i)."""
    batch: int = 32
    """Episodes stepped together."""
    device: str = "auto"
    """Device of the learned simulator."""
    threads: int = 0
    """Torch CPU threads (0: torch's choice; 1 is fastest for small models on a busy machine)."""
    max_step_px: float = 0.0
    """SB3 policies: pixels an action of 1 moves an object; 0: from the run's config.json,
    else MAX_STEP_PX."""
    agree_cover: float = AGREE_COVER
    """Fraction of each tracked mask M's mask must cover to confirm a success."""
    tracking: Tracking = ""
    """Learned env: tracking instead of the id's (segment, carry, anchored)."""
    checkpoint: str = ""
    """Learned env: generator checkpoint instead of the id's."""
    start_frames: str = ""
    """Learned env: first frames instead of the id's."""
    max_episode_steps: int = 0
    """Episode length limit; 0: the id's registered one."""
    num_objects: int = 0
    """Controlled objects K; 0: the id's default (1). A saved policy needs the K it was
    trained with (its run's config.json gives it when this is 0)."""

    def __post_init__(self) -> None:
        """Validate the values, naming the bad one."""
        check_choices(self)
        for name in ("episodes", "batch"):
            _check_int(self, name, 1)
        _check_int(self, "max_episode_steps", 0)
        _check_int(self, "num_objects", 0)
        _check_int(self, "threads", 0)
        if self.max_step_px < 0:
            raise ValueError(f"max_step_px must be >= 0, got {self.max_step_px!r}")


@dataclass(frozen=True)
class MimicConfig:
    """One run of ``lcvg-rl mimic``: a driving clip's motion replayed from another frame."""

    driving: str
    """Driving clip folder: frames 00000.png ... and, for sprites data, ground_truth.npz (its
    object masks; without it the objects are M's mask of each frame)."""
    frame: str = "twin:0"
    """First frame of the mimic: an image file, or twin:SEED for the first frame of the twin's
    scene drawn with SEED (then the controls are replayed in the twin too)."""
    out: str = "runs/mimic"
    """Output folder: mimic.gif (driving | mimicked | twin) and mimic.json."""
    env: str = "LCVG-Sprites-v0"
    """Learned environment the controls are applied in (its -Real- twin for twin:SEED)."""
    control: Literal["affine", "position"] = "affine"
    """Control mode of the fitted motions: affine (move, turn, scale) or position."""
    objects: int = 0
    """Objects to follow; 0: every object of the clip's ground truth (M's largest one
    without it)."""
    steps: int = 0
    """Steps to mimic; 0: the whole clip."""
    device: str = "auto"
    """Device of the learned simulator."""
    threads: int = 0
    """Torch CPU threads (0: torch's choice; 1 is fastest for small models on a busy machine)."""
    fit_iterations: int = 16
    """Refinement iterations of each control fit (lcvg_env.control.fit_control)."""
    fps: float = 4.0
    """Frames per second of mimic.gif."""
    checkpoint: str = ""
    """Generator checkpoint instead of the id's."""
    tracking: Tracking = ""
    """Tracking instead of the id's (segment, carry, anchored)."""

    def __post_init__(self) -> None:
        """Validate the values, naming the bad one."""
        check_choices(self)
        for name in ("objects", "steps", "threads"):
            _check_int(self, name, 0)
        _check_int(self, "fit_iterations", 1)
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps!r}")


def _check_int(config: Any, name: str, low: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(
            f"{type(config).__name__}.{name} must be an int >= {low}, got {value!r}"
        )


def _known(cls: type, data: Any, source: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"{source}: unknown {cls.__name__} field(s) {unknown}")
    return {key: tuple(v) if isinstance(v, list) else v for key, v in data.items()}
