"""The simulator and environments on a CUDA device (``pytest -m gpu``; deselected by default).

Written for the GPU sessions: each compares the CUDA path with the CPU one on the same tiny
random-weights model, so a failure names the CUDA-only part (layout, autocast, compilation).
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from lcvg_env.models import LayeredGenerator
from lcvg_env.simulator import Simulator
from tests.lcvg_env.conftest import TINY, tiny_frames

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CONTROLS = torch.tensor([[[0.1, 0.0]], [[0.0, -0.1]]])


def stepped(model: LayeredGenerator, device: str, **kwargs) -> Simulator:
    """A 2-environment simulator on ``device`` after reset and one step."""
    sim = Simulator(copy.deepcopy(model).to(device), 2, **kwargs)
    sim.reset([0, 1], tiny_frames(2))
    sim.step(CONTROLS.to(device))
    return sim


@pytest.fixture(scope="module")
def model() -> LayeredGenerator:
    torch.manual_seed(0)
    return LayeredGenerator(TINY).eval()


def test_cuda_networks_match_the_cpu_ones(model: LayeredGenerator) -> None:
    frames = torch.from_numpy(tiny_frames(2)).permute(0, 3, 1, 2).float() / 127.5 - 1
    masks = torch.zeros(2, 1, 48, 48)
    masks[:, :, 10:20, 12:24] = 1.0
    gpu_model = copy.deepcopy(model).to("cuda")
    with torch.inference_mode():
        # TF32 convolutions on CUDA: close, not equal
        assert torch.allclose(model.mask(frames), gpu_model.mask(frames.to("cuda")).cpu(),
                              atol=1e-2)
        assert torch.allclose(model.predict_next(frames, masks),
                              gpu_model.predict_next(frames.to("cuda"), masks.to("cuda")).cpu(),
                              atol=2e-2)


def test_simulator_steps_on_cuda_in_the_contiguous_layout(model: LayeredGenerator) -> None:
    sim = stepped(model, "cuda")
    assert sim.device.type == "cuda" and not sim.channels_last
    assert sim.frames.is_contiguous() and bool(torch.isfinite(sim.frames).all())
    assert set(torch.unique(sim.masks).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("kwargs", [{"autocast": True}, {"compile": True},
                                    {"autocast": True, "compile": True}])
def test_bf16_and_compiled_steps_stay_close(model: LayeredGenerator, kwargs) -> None:
    reference, other = stepped(model, "cuda"), stepped(model, "cuda", **kwargs)
    assert other.frames.dtype == torch.float32 and bool(torch.isfinite(other.frames).all())
    # mean over the frame: a few mask pixels on the threshold may flip between precisions
    assert float((reference.frames - other.frames).abs().mean()) < 0.05


def test_environment_on_cuda_passes_the_checker(sprites_kwargs: dict[str, str]) -> None:
    env = gym.make("LCVG-Sprites-v0", **{**sprites_kwargs, "device": "cuda"}).unwrapped
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert isinstance(obs, np.ndarray) and obs.dtype == np.uint8
