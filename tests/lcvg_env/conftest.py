"""Fixtures of the environment tests: a tiny random-weights checkpoint and first frames.

The environments are tested on ``ModelConfig.tiny()`` at 48x48 (random weights) saved with
``lcvg_env.checkpoint`` into a temporary folder, so no test needs the bundled model. Tests of
the registered sprites ids use the bundled files when they are present (``sprites_kwargs``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lcvg_env import control as ctl
from lcvg_env.models import LayeredGenerator, ModelConfig
from lcvg_env.registration import SPRITES_CHECKPOINT, SPRITES_STARTS, register_envs

ASSETS = Path(__file__).resolve().parents[2] / "lcvg_env" / "assets"
BUNDLED = (ASSETS / SPRITES_CHECKPOINT).is_file() and (ASSETS / SPRITES_STARTS).is_file()

TINY = ModelConfig.tiny().replace(resolution=(48, 48))


def shift_theta(dx_px: float, dy_px: float, size: int, batch: int = 1) -> torch.Tensor:
    """(batch, 1, 2, 3) input_from_output matrices of a forward translation in pixels."""
    params = torch.tensor([[2 * dx_px / size, 2 * dy_px / size]]).repeat(batch, 1)
    return ctl.params_to_matrix(params, size=(size, size)).view(batch, 1, 2, 3)


def tiny_frames(count: int = 6, size: int = 48, seed: int = 0) -> np.ndarray:
    """uint8 (count, size, size, 3): grey background with one or two coloured squares."""
    rng = np.random.default_rng(seed)
    frames = np.full((count, size, size, 3), 90, np.uint8)
    for i in range(count):
        for color in ([250, 40, 40], [40, 60, 250])[: 1 + i % 2]:
            x, y = rng.integers(4, size - 14, 2)
            frames[i, y : y + 10, x : x + 10] = color
    return frames


def make_tiny(folder: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    model = LayeredGenerator(TINY)
    checkpoint = model.save(folder / "tiny.safetensors")
    starts = folder / "tiny_starts.npz"
    np.savez(starts, frames=tiny_frames())
    return checkpoint, starts


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Keyword arguments of an environment over the tiny checkpoint and its first frames."""
    checkpoint, starts = make_tiny(tmp_path_factory.mktemp("tiny"))
    return {"checkpoint": str(checkpoint), "start_frames": str(starts), "device": "cpu"}


@pytest.fixture(scope="session")
def sprites_kwargs(tiny: dict[str, str]) -> dict[str, str]:
    """Extra gym.make kwargs for the sprites ids: none with the bundled model, else tiny."""
    register_envs()
    return {"device": "cpu"} if BUNDLED else dict(tiny)
