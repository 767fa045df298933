"""Registration of the lcvg environment ids with Gymnasium (``register_envs``).

- ``LCVG-Sprites-v0``: the bundled ``sprites_small.safetensors`` (composite prediction) with
  the bundled first frames ``sprites_starts.npz`` (varied style) and carried tracking; free
  simulator, 100 steps.
- ``LCVG-Sprites-Reach-v0``: the same model; reach task, 50 steps, Dict observation
  (``frame``, ``centroids``, ``target``).
- Both take ``checkpoint="sprites_fast.safetensors"``, the bundled CPU-layout model: more
  frames/s on CPUs (docs/performance.md), objects placed a little less precisely
  (docs/results.md, "The CPU layout").
- ``LCVG-BAIR-v0``: ``bair.safetensors`` (256x256, ``paper_bair`` or a converted official
  model); first frames beside the checkpoint or given; free, 100 steps.
- ``LCVG-Tennis-v0``: ``tennis.safetensors`` (96x256, ``paper_tennis``); free, 100 steps.
- ``LCVG-Sprites-Real-v0``: the ground-truth twin of ``LCVG-Sprites-v0``
  (``lcvg_env.world.twin.SpritesRealEnv``: a true sprites scene whose objects move exactly as
  commanded; same spaces, task and infos; no checkpoint; varied style like the bundled first
  frames, ``style="classic"`` for the other); free, 100 steps.
- ``LCVG-Sprites-Reach-Real-v0``: the twin of ``LCVG-Sprites-Reach-v0``; reach, 50 steps,
  Dict observation (``frame``, ``centroids``, ``target``).

A checkpoint name is looked up as ``checkpoint=`` given to ``gym.make``, else in
``$LCVG_CHECKPOINT_DIR``, else in ``~/.cache/lcvg``, else in the package's bundled assets.
First frames default to ``<checkpoint stem>_starts.npz`` or ``starts.npz`` beside the checkpoint;
give ``start_frames=`` (a folder of clips, an npz/npy file, an image or an array) or
``reset(options={"frame": ...})`` otherwise.

Every learned id has a ``vector_entry_point``, so ``gym.make_vec(id, num_envs=N,
vectorization_mode="vector_entry_point")`` returns the natively batched ``LCVGVectorEnv``; the
twin ids have none (``gym.make_vec(id, num_envs=N)`` vectorises them with Gymnasium's
``SyncVectorEnv``). Entry points are strings: nothing but this table is imported until an
environment is made.
"""

from __future__ import annotations

from typing import Any

ENTRY_POINT = "lcvg_env.env:LCVGEnv"
VECTOR_ENTRY_POINT = "lcvg_env.vector:LCVGVectorEnv"
TWIN_ENTRY_POINT = "lcvg_env.world.twin:SpritesRealEnv"
"""Entry point of the ground-truth twin ids (no vector entry point)."""
SPRITES_CHECKPOINT = "sprites_small.safetensors"
"""Bundled sprites checkpoint in ``lcvg_env/assets``."""
SPRITES_FAST_CHECKPOINT = "sprites_fast.safetensors"
"""Bundled sprites checkpoint of the CPU layout (``patch_size=2``): faster, slightly less precise;
``gym.make("LCVG-Sprites-v0", checkpoint=SPRITES_FAST_CHECKPOINT)``."""
SPRITES_STARTS = "sprites_starts.npz"
"""Bundled first frames of held-out varied-style sprites clips, uint8 (100, 64, 64, 3) under
``frames``."""
SPRITES_TRACKING = "carry"
"""Default ``tracking`` of the sprites ids: measured against the twin, the bundled composite
models keep objects best with carried masks (docs/fidelity.md)."""

TRAINING_COMMANDS: dict[str, str] = {
    "bair.safetensors": (
        "lcvg-train --preset paper_bair --data DATA_DIR --out runs/bair   (data: "
        "`lcvg-data convert-bair SRC DATA_DIR`), then "
        "cp runs/bair/model.safetensors ~/.cache/lcvg/bair.safetensors; or convert the "
        "authors' released model: "
        "lcvg-convert-official bair.ckpt ~/.cache/lcvg/bair.safetensors --trust-pickle"
    ),
    "tennis.safetensors": (
        "lcvg-train --preset paper_tennis --data DATA_DIR --out runs/tennis, then "
        "cp runs/tennis/model.safetensors ~/.cache/lcvg/tennis.safetensors"
    ),
    SPRITES_CHECKPOINT: (
        "lcvg-data make sprites --out data/sprites --clips 1000 --size 64 --seed 0 && "
        "lcvg-train --preset small --data data/sprites --out runs/sprites_paper && "
        "lcvg-data make sprites --style varied --out data/varied --clips 1000 --size 64 "
        "--seed 1 && lcvg-train --preset sprites --stage 2 --stage2-steps 4000 --init "
        "runs/sprites_paper/model.safetensors --data data/varied --out runs/sprites (the "
        "bundled file is missing from this installation: reinstall lcvg)"
    ),
    SPRITES_FAST_CHECKPOINT: (
        "the commands of sprites_small.safetensors, each lcvg-train with --model.patch-size 2 "
        "--model.ch 16 --model.ch-mult 1,2 (the bundled file is missing from this "
        "installation: reinstall lcvg)"
    ),
}
"""How to make each named checkpoint, quoted when it is missing."""

ENVIRONMENTS: dict[str, dict[str, Any]] = {
    "LCVG-Sprites-v0": {
        "entry_point": ENTRY_POINT,
        "vector_entry_point": VECTOR_ENTRY_POINT,
        "max_episode_steps": 100,
        "kwargs": {"checkpoint": SPRITES_CHECKPOINT, "start_frames": SPRITES_STARTS,
                   "tracking": SPRITES_TRACKING, "separate": True, "occlusion": True},
    },
    "LCVG-Sprites-Reach-v0": {
        "entry_point": ENTRY_POINT,
        "vector_entry_point": VECTOR_ENTRY_POINT,
        "max_episode_steps": 50,
        "kwargs": {
            "checkpoint": SPRITES_CHECKPOINT,
            "start_frames": SPRITES_STARTS,
            "task": "reach",
            "observation_keys": ("frame", "centroids", "target"),
            "tracking": SPRITES_TRACKING,
            "separate": True,
            "occlusion": True,
        },
    },
    "LCVG-BAIR-v0": {
        "entry_point": ENTRY_POINT,
        "vector_entry_point": VECTOR_ENTRY_POINT,
        "max_episode_steps": 100,
        "kwargs": {"checkpoint": "bair.safetensors", "expected_resolution": (256, 256)},
    },
    "LCVG-Tennis-v0": {
        "entry_point": ENTRY_POINT,
        "vector_entry_point": VECTOR_ENTRY_POINT,
        "max_episode_steps": 100,
        "kwargs": {"checkpoint": "tennis.safetensors", "expected_resolution": (96, 256)},
    },
    "LCVG-Sprites-Real-v0": {
        "entry_point": TWIN_ENTRY_POINT,
        "vector_entry_point": None,
        "max_episode_steps": 100,
        "kwargs": {"style": "varied"},
    },
    "LCVG-Sprites-Reach-Real-v0": {
        "entry_point": TWIN_ENTRY_POINT,
        "vector_entry_point": None,
        "max_episode_steps": 50,
        "kwargs": {"task": "reach", "observation_keys": ("frame", "centroids", "target"),
                   "style": "varied"},
    },
}
"""Registered ids: entry points (``vector_entry_point`` None: Gymnasium's own vectorisation),
``max_episode_steps`` and the keyword arguments of the environment class."""


def register_envs() -> None:
    """Register every id of ``ENVIRONMENTS`` with Gymnasium (idempotent)."""
    import gymnasium

    for env_id, spec in ENVIRONMENTS.items():
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id,
            entry_point=spec["entry_point"],
            vector_entry_point=spec["vector_entry_point"],
            max_episode_steps=spec["max_episode_steps"],
            kwargs=dict(spec["kwargs"]),
        )


def missing_checkpoint_message(name: str, looked: str) -> str:
    """Write the error text for a checkpoint that is nowhere to be found.

    Args:
        name: the checkpoint asked for (name or path).
        looked: the ``FileNotFoundError`` text of ``find_checkpoint`` (every place looked).
    """
    command = TRAINING_COMMANDS.get(
        name, "lcvg-train --preset small --data DATA_DIR --out runs/NAME (see README, Training)"
    )
    return (
        f"no lcvg checkpoint {name!r}: {looked}. Pass checkpoint=PATH to gym.make (e.g. "
        f"gym.make(ID, checkpoint='model.safetensors')), or put {name!r} in "
        "$LCVG_CHECKPOINT_DIR or ~/.cache/lcvg. To make one: " + command
    )
