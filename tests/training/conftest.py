"""Fixtures of the training tests: a tiny sprite dataset and tiny configs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lcvg_env.models import ModelConfig
from training.config import TrainConfig
from training.data.ground_truth import ground_truth_from_masks, save_ground_truth

COLORS = np.array([[230, 40, 40], [40, 90, 230]], dtype=np.uint8)


def make_tiny_sprites(root: Path, clips: dict[str, int], frames: int = 6, size: int = 32,
                      seed: int = 0, objects: int = 1) -> Path:
    """Clips of coloured squares moving over a static striped background, with ground truth."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for split, n in clips.items():
        for c in range(n):
            clip = root / split / f"{c:05d}"
            clip.mkdir(parents=True)
            bg = np.zeros((size, size, 3), np.uint8)
            bg[..., 0] = 90 + 30 * ((xx // 4) % 2)
            bg[..., 1] = 120 + 20 * ((yy // 4) % 2)
            bg[..., 2] = 100
            side = size // 5
            pos = rng.uniform(0, size - side, (objects, 2))
            vel = rng.uniform(-2.5, 2.5, (objects, 2))
            masks = np.zeros((frames, objects, size, size), np.uint8)
            for t in range(frames):
                img = bg.copy()
                for k in range(objects):
                    x0, y0 = np.round(pos[k]).astype(int)
                    masks[t, k, y0:y0 + side, x0:x0 + side] = 1
                    img[masks[t, k] == 1] = COLORS[k]
                    pos[k] += vel[k]
                    for d in range(2):
                        if not 0 <= pos[k, d] <= size - side:
                            vel[k, d] = -vel[k, d]
                            pos[k, d] = np.clip(pos[k, d], 0, size - side)
                Image.fromarray(img).save(clip / f"{t:05d}.png")
            save_ground_truth(clip, ground_truth_from_masks(masks, COLORS[:objects]))
    return root


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every training test runs on one torch thread (see tests/conftest.py)."""


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sprites")
    return make_tiny_sprites(root, {"train": 6, "val": 2, "test": 2}, frames=6, size=32)


def tiny_config(data: Path, **overrides) -> TrainConfig:
    base = TrainConfig(
        data=str(data), device="cpu", stage1_steps=3, stage2_steps=2, batch_size=4,
        disc_start=1, disc_weight=0.1, disc_ndf=8, disc_norm="group", log_every=1, sample_every=0,
        checkpoint_every=100, eval_clips=0, code_reset_every=2, progress=False, fit_iterations=2,
        model=ModelConfig.tiny())
    return replace(base, **overrides)
