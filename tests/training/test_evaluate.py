import json
import math

import pytest
import torch

from lcvg_env import control
from lcvg_env.models import LayeredGenerator, ModelConfig
from lcvg_env.simulator import Simulator
from training.evaluate import (
    PROTOCOLS,
    apply_object_controls,
    contact_so_far,
    evaluate,
    fit_object_controls,
    rollout,
)

from .conftest import make_tiny_sprites


def test_object_controls_move_each_object_by_its_own_transform():
    masks = torch.zeros(1, 1, 32, 32)
    masks[..., 4:10, 4:10] = 1  # object 0 at (6.5, 6.5)
    masks[..., 20:26, 20:26] = 1  # object 1 at (22.5, 22.5)
    # object 0 moves right by 4 px, object 1 stays: input_from_output shifts sample left
    dx = 4 * 2 / 32
    theta = torch.tensor([[[1.0, 0, -dx], [0, 1, 0]], [[1.0, 0, 0], [0, 1, 0]]]).unsqueeze(0)
    positions = torch.tensor([[[6.5, 6.5], [22.5, 22.5]]])
    out, residual = apply_object_controls(masks, theta, positions)
    expected = torch.zeros_like(masks)
    expected[..., 4:10, 8:14] = 1
    expected[..., 20:26, 20:26] = 1
    assert torch.equal(out, expected) and residual is None
    # with a residual, whole-pixel moves owe nothing; a 0.4 px move is owed to the next step
    out, residual = apply_object_controls(masks, theta, positions, torch.zeros(1, 2, 2))
    assert torch.equal(out, expected) and torch.allclose(residual, torch.zeros(1, 2, 2))
    fraction = theta.clone()
    fraction[0, 1, 0, 2] = -0.4 * 2 / 32
    out, residual = apply_object_controls(masks, fraction, positions, torch.zeros(1, 2, 2))
    assert torch.equal(out, expected)
    assert torch.allclose(residual[0, 1] * 16, torch.tensor([0.4, 0.0]), atol=1e-5)
    # an absent object (NaN position) leaves its components where they are
    out, _ = apply_object_controls(masks, theta[:, :1], torch.tensor([[[math.nan, math.nan]]]))
    assert torch.equal(out, masks)


def _key_colour_model(later: float | None = None) -> LayeredGenerator:
    """A tiny generator whose mask network is replaced by a colour key (red > 0) on the first
    frame; on generated frames it sees ``later`` everywhere (1, 0) or the key again (None)."""
    torch.manual_seed(0)
    model = LayeredGenerator(ModelConfig.tiny()).eval()
    first_call = []

    def binary_mask(frames, threshold=0.5):
        if later is not None and first_call:
            return torch.full_like(frames[:, :1], later)
        first_call.append(1)
        return (frames[:, :1] > 0).float()

    model.binary_mask = binary_mask
    return model


@pytest.mark.parametrize("tracking,later,moves", [
    ("carry", None, True), ("anchored", 1.0, True), ("anchored", 0.0, False)])
def test_rollout_carries_masks_by_the_sum_of_the_transforms(tracking, later, moves):
    model = _key_colour_model(later)
    first = torch.full((1, 3, 32, 32), -1.0)
    first[:, 0, 4:10, 4:10] = 1.0  # a red square: the only object
    steps = 3
    theta = control.identity_matrix(steps).view(1, steps, 1, 2, 3).clone()
    theta[..., 0, 2] = -0.6 * 2 / 32  # 0.6 px right per step: 1, 1, 2 px after rounding
    positions = torch.full((1, steps, 1, 2), 6.5)
    _, used = rollout(model, first, steps, "translation", theta=theta, positions=positions,
                      tracking=tracking)
    square = first[:, :1] > 0
    expected = [square.roll(shift, -1).float() for shift in (1, 1, 2)]
    if not moves:  # M saw nothing in the first generated frame: the object is found nowhere
        expected[1:] = [torch.zeros_like(expected[0])] * 2
    for t in range(steps):
        assert torch.equal(used[:, t], expected[t]), t
    with pytest.raises(ValueError, match="'carry'"):
        rollout(model, first, steps, "translation", theta=theta, positions=positions,
                tracking="carry", subpixel=False)
    with pytest.raises(ValueError, match="'teleport'"):
        rollout(model, first, steps, "translation", theta=theta, positions=positions,
                tracking="teleport")


def test_fitted_object_controls_recover_translation():
    obj = torch.zeros(1, 2, 1, 32, 32)
    obj[0, 0, 0, 8:16, 8:16] = 1
    obj[0, 1, 0, 8:16, 11:19] = 1
    theta, iou = fit_object_controls(obj, "translation", iterations=8)
    moved = control.binarize(control.warp_masks(obj[0, :1], theta[0, 0]))
    assert iou.shape == (1, 1, 1) and iou.item() > 0.95
    assert (moved - obj[0, 1:]).abs().sum() <= 2


def test_contact_flags_start_when_objects_meet_and_stay_on():
    objects = torch.zeros(1, 4, 3, 16, 16)  # (B, T, K, H, W)
    objects[0, :, 2, 0:2, 0:2] = 1  # far from the others all the time
    for t, gap in enumerate((8, 4, 1, 8)):  # object 1 approaches object 0, touches, leaves
        objects[0, t, 0, 8:10, 2:4] = 1
        objects[0, t, 1, 8:10, 4 + gap:6 + gap] = 1
    flags = contact_so_far(objects, margin=2)
    assert flags.shape == (1, 4, 3)
    assert flags[0, :, 0].tolist() == [False, False, True, True]  # stays True after leaving
    assert flags[0, :, 1].tolist() == [False, False, True, True]
    assert not flags[0, :, 2].any()


def test_evaluate_writes_json_plot_and_gif(tiny_data, tmp_path):
    torch.manual_seed(0)
    model = LayeredGenerator(ModelConfig.tiny()).train()
    model.mask_net.eval()  # as in stage II: evaluating must not wake the frozen mask network
    result = evaluate(model, tiny_data, tmp_path / "eval", split="test", num_clips=2, horizon=3,
                      fit_iterations=2)
    assert model.training and model.encoder.training and not model.mask_net.training
    saved = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert (tmp_path / "eval" / "error_vs_step.png").is_file()
    assert (tmp_path / "eval" / "rollouts.gif").is_file()
    assert saved["clips"] == 2 and saved["horizon"] == 3
    assert 0.0 <= result["mask_iou"] <= 1.0
    # the colour locator finds the objects of the real frames almost exactly
    assert result["locator_on_real"]["detection_rate"] == 1.0
    assert result["locator_on_real"]["rmse"] < 0.02
    for p in PROTOCOLS:
        entry = saved["protocols"][p]
        assert len(entry["psnr_per_step"]) == 3 and len(entry["rmse_per_step"]) == 3
        assert 0.0 <= entry["missed_rate"] <= 1.0
        assert len(entry["median_per_step"]) == 3
        # an untrained model may miss every object: then there are no errors (null)
        if entry["median"] is not None:
            assert entry["median"] >= 0 and 0 <= entry["gross_rate"] <= 1
        # every located object is in exactly one of the two contact groups, and so is every
        # missed one: the overall miss rate lies between the two groups' rates
        assert entry["isolated"]["count"] + entry["after_contact"]["count"] == entry["count"]
        rates = sorted([entry["isolated"]["missed_rate"], entry["after_contact"]["missed_rate"]])
        assert rates[0] - 1e-9 <= entry["missed_rate"] <= rates[1] + 1e-9


def test_ablation_diagnostics(tiny_data):
    from training.ablations import mask_diagnostics

    torch.manual_seed(0)
    model = LayeredGenerator(ModelConfig.tiny()).eval()
    d = mask_diagnostics(model, tiny_data, split="test", num_clips=2, frames=4)
    assert d["frames"] == 8 and 0 <= d["mask_iou"] <= 1 and d["leak"] >= 0
    assert d["true_fraction"] > 0


def test_evaluate_rejects_short_or_missing_data(tiny_data, tmp_path):
    model = LayeredGenerator(ModelConfig.tiny()).eval()
    with pytest.raises(ValueError, match="frames"):
        evaluate(model, tiny_data, None, split="test", num_clips=1, horizon=50)
    with pytest.raises(FileNotFoundError):
        evaluate(model, tmp_path, None, split="test")


def test_evaluate_names_the_skipped_clips_when_too_few_are_usable(tmp_path):
    data = make_tiny_sprites(tmp_path / "data", {"test": 3}, frames=6, size=32)
    (data / "test" / "00001" / "ground_truth.npz").unlink()
    for frame in ("00003.png", "00004.png", "00005.png"):
        (data / "test" / "00002" / frame).unlink()
    model = LayeredGenerator(ModelConfig.tiny()).eval()
    with pytest.raises(ValueError, match="num_clips=3") as error:
        evaluate(model, data, None, split="test", num_clips=3, horizon=3, fit_iterations=2)
    message = str(error.value)
    assert "only 1 usable" in message and "skipped 2" in message
    assert "00001 (no ground_truth.npz)" in message
    assert "00002 (3 frames, needs 4)" in message
    result = evaluate(model, data, None, split="test", num_clips=1, horizon=3, fit_iterations=2)
    assert result["clips"] == 1
    with pytest.warns(UserWarning, match="00001 \\(no ground_truth.npz\\).*scoring the 1"):
        result = evaluate(model, data, None, split="test", num_clips=3, horizon=3,
                          fit_iterations=2, at_most=True)
    assert result["clips"] == 1


def test_evaluate_without_usable_clips_names_the_sidecar_and_its_arrays(tiny_data):
    model = LayeredGenerator(ModelConfig.tiny()).eval()
    with pytest.raises(ValueError, match="no usable clip") as error:
        evaluate(model, tiny_data, None, split="test", num_clips=1, horizon=50)
    message = str(error.value)
    assert "00000 (6 frames, needs 51)" in message and "00001 (6 frames, needs 51)" in message
    for name in ("ground_truth.npz", "object_masks", "centroids", "colors", ">= 51 frames"):
        assert name in message, name


def test_rollout_names_the_inputs_its_protocol_needs():
    model = LayeredGenerator(ModelConfig.tiny()).eval()
    first = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ValueError, match="'teleport'"):
        rollout(model, first, 2, "teleport")
    with pytest.raises(ValueError, match="theta.*positions.*'theta': None"):
        rollout(model, first, 2, "affine", positions=torch.zeros(1, 2, 1, 2))
    with pytest.raises(ValueError, match="target_masks"):
        rollout(model, first, 2, "nonparametric")


@pytest.mark.parametrize("prediction", ["frame", "composite"])
def test_rollout_carries_objects_as_the_simulator_does(prediction):
    # the same transforms from the same first frame: the same frames, bit for bit
    torch.manual_seed(0)
    model = LayeredGenerator(ModelConfig.tiny().replace(prediction=prediction)).eval()
    model.mask = lambda frames: (frames[:, :1] > 0).float()  # a colour key: the red square
    first = torch.full((1, 3, 32, 32), -1.0)
    first[:, 0, 4:10, 4:10] = 1.0
    params = torch.tensor([[0.05, 0.02], [-0.03, 0.04], [0.06, 0.0]])  # (T, dx dy)
    sim = Simulator(model, 1, tracking="carry", channels_last=False)
    sim.reset([0], first)
    frames, theta = [], []
    for step in params:
        theta.append(control.params_to_matrix(step[None], center=sim.centroids[0],
                                              size=(32, 32)))  # as the simulator makes it
        frames.append(sim.step(step.view(1, 1, 2)).clone())
    positions = torch.full((1, len(params), 1, 2), 6.5)  # the square's pixel centroid
    generated, _ = rollout(model, first, len(params), "translation",
                           theta=torch.stack(theta).view(1, -1, 1, 2, 3), positions=positions,
                           tracking="carry")
    assert torch.equal(generated, torch.stack(frames, 1))


# --- command lines ----------------------------------------------------------------------------


@pytest.mark.parametrize("main", ["training.cli:eval_main", "training.ablations:main"])
def test_command_lines_have_help(main, capsys):
    import importlib

    module, name = main.split(":")
    with pytest.raises(SystemExit) as info:
        getattr(importlib.import_module(module), name)(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "--eval-clips" in text and "--eval_clips" not in text


def test_eval_configs_round_trip_through_lcvg_eval(capsys):
    from lcvg_env.configs import config_to_argv
    from lcvg_env.world.scene import SceneConfig
    from training.cli import EvalConfig, eval_main
    from training.paired import PairedConfig

    config = EvalConfig(data="d", eval_split="val", eval_clips=3, eval_horizon=5,
                        fit_iterations=2, gif_clips=0, whole_pixel=True, tracking="segment",
                        device="cpu", seed=7)
    assert eval_main(["--print-config", *config_to_argv(config)]) == 0
    assert EvalConfig(**json.loads(capsys.readouterr().out)) == config
    paired = PairedConfig(program="square", episodes=3, steps=4, seed=1, style="varied",
                          objects=(2, 3), tracking="carry", threads=1, noise=False, show=1)
    assert eval_main(["--print-config", *config_to_argv(paired)]) == 0
    printed = json.loads(capsys.readouterr().out)
    scene = SceneConfig(**{key: tuple(value) if isinstance(value, list) else value
                           for key, value in printed["scene"].items()})
    assert PairedConfig(**{**printed, "objects": tuple(printed["objects"]),
                           "scene": scene}) == paired
    # lcvg-eval's older names of three fields still work, hidden from --help
    assert eval_main(["--print-config", "--clips", "2", "--horizon", "3", "--split", "val"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["eval_clips"], printed["eval_horizon"], printed["eval_split"]) == (2, 3, "val")
    with pytest.raises(SystemExit):
        eval_main(["--data", "d", "--tracking", "follow"])
    err = capsys.readouterr().err
    assert "'follow'" in err and "'segment', 'carry', 'anchored'" in err
    with pytest.raises(ValueError, match=r"EvalConfig.tracking must be one of"):
        EvalConfig(tracking="follow")  # type: ignore[arg-type]
