"""lcvg-rl mimic on a tiny clip, and the frame-backed success's agreement with the twin."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agents.rl import cli
from agents.rl.agreement import twin_agreement
from agents.rl.mimic import fit_actions, follow_components, read_clip
from agents.rl.policies import load_policy
from lcvg_env.spaces import ActionRanges
from tests.lcvg_env.conftest import BUNDLED

SIZE = 48


def write_clip(folder: Path, frames: int = 5, ground_truth: bool = True) -> Path:
    """A red square moving 2 px right per frame on grey, with its ground-truth masks."""
    folder.mkdir(parents=True)
    masks = np.zeros((frames, 1, SIZE, SIZE), np.uint8)
    for t in range(frames):
        image = np.full((SIZE, SIZE, 3), 100, np.uint8)
        x = 10 + 2 * t
        image[18:28, x : x + 10] = (230, 30, 30)
        masks[t, 0, 18:28, x : x + 10] = 1
        Image.fromarray(image).save(folder / f"{t:05d}.png")
    if ground_truth:
        np.savez_compressed(folder / "ground_truth.npz", object_masks=masks)
    return folder


def test_fitted_actions_reproduce_the_motion(tmp_path: Path) -> None:
    import torch

    clip = write_clip(tmp_path / "clip")
    frames = read_clip(clip)
    assert frames.shape == (5, SIZE, SIZE, 3)
    masks = torch.from_numpy(np.load(clip / "ground_truth.npz")["object_masks"]).float()
    ranges = ActionRanges()
    actions, stats = fit_actions(masks, "position", ranges, (SIZE, SIZE), iterations=8)
    assert actions.shape == (4, 2)
    # 2 px right per frame = 2 / (W / 2) normalised, over the range max_translation
    np.testing.assert_allclose(actions[:, 0], 2 / (SIZE / 2) / ranges.max_translation, atol=0.02)
    np.testing.assert_allclose(actions[:, 1], 0.0, atol=0.02)
    assert stats["fit_iou"] > 0.9 and stats["clipped_fraction"] == 0.0
    swapped = torch.stack([masks[:, 0], torch.zeros_like(masks[:, 0])], dim=1)
    swapped[2:] = swapped[2:].flip(1)  # the object shows up in slot 1 from frame 2 on
    assert follow_components(swapped)[:, 0].sum(dim=(1, 2)).min() > 0


@pytest.mark.parametrize("frame", ["twin", "image"])
def test_mimic_writes_the_videos_and_twin_errors(frame: str, tiny: dict, tmp_path: Path,
                                                 capsys, one_thread) -> None:
    clip = write_clip(tmp_path / "clip")
    spec = "twin:1" if frame == "twin" else str(clip / "00002.png")
    out = tmp_path / "out"
    assert cli.main(["mimic", "--driving", str(clip), "--frame", spec, "--out", str(out),
                     "--checkpoint", tiny["checkpoint"], "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["objects"] == 1 and summary["steps"] == 4
    assert summary["masks_from"] == "ground_truth"
    gif = Image.open(out / "mimic.gif")
    panels = 3 if frame == "twin" else 2
    assert gif.n_frames == 5 and gif.size[0] > panels * SIZE * 2
    assert json.loads((out / "mimic.json").read_text()) == summary
    if frame == "twin":
        twin = summary["twin"]
        assert len(twin["position_error_px_per_step"]) == 4
        assert twin["shape_error"] is None or 0.0 <= twin["shape_error"] <= 1.0
    else:
        assert summary["twin"] is None


def test_mimic_names_missing_inputs(tmp_path: Path, capsys) -> None:
    assert cli.main(["mimic", "--driving", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "none" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["mimic", "--out", str(tmp_path)])  # --driving is required


def test_twin_agreement_of_frame_backed_success(tiny: dict, one_thread) -> None:
    result = twin_agreement(lambda env: load_policy("scripted:reach", env),
                            "LCVG-Sprites-Reach-v0", episodes=3, seed=0,
                            checkpoint=tiny["checkpoint"], device="cpu", max_episode_steps=4)
    assert result["episodes"] == 3
    for key in ("claimed_success_rate", "frame_backed_success_rate", "twin_success_rate",
                "agreement", "claimed_agreement"):
        assert 0.0 <= result[key] <= 1.0
    assert result["frame_backed_success_rate"] <= result["claimed_success_rate"]


@pytest.mark.skipif(not BUNDLED, reason="bundled sprites checkpoint not present")
def test_frame_backed_success_agrees_with_the_twin_on_the_bundled_model(one_thread) -> None:
    # the twin disagrees where an episode ends just inside the 3.2 px radius in the simulator
    # and just outside it in the twin (the learned and true centroids differ a little)
    result = twin_agreement(lambda env: load_policy("scripted:reach", env),
                            "LCVG-Sprites-Reach-v0", episodes=16, seed=0, device="cpu")
    assert result["frame_backed_success_rate"] >= 0.75
    assert result["agreement"] >= 0.6
