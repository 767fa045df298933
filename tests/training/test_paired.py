"""Paired evaluation against the ground-truth twin: metrics, programs, baseline, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training import cli
from training import paired_metrics as pm
from training.paired import (
    PROGRAMS,
    CopyPaste,
    PairedConfig,
    action_program,
    summarize_arrays,
)

H = 64
RED, GREEN = (225, 35, 35), (35, 195, 55)
NO_OTHERS = np.zeros((0, H, H), bool)


def _background() -> np.ndarray:
    yy, xx = np.mgrid[:H, :H]
    bg = np.zeros((H, H, 3), np.uint8)
    bg[..., 0] = 110 + 10 * np.sin(xx / 7.0)
    bg[..., 1] = 100 + yy // 4
    bg[..., 2] = 120
    return bg


def _disc(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :H]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def _scene(shift: int = 0, drop_first: bool = False):
    bg = _background()
    a, b = _disc(20, 30, 6), _disc(46, 40, 5)
    true = bg.copy()
    true[a], true[b] = RED, GREEN
    gen = bg.copy()
    if not drop_first:
        gen[np.roll(a, shift, axis=1)] = RED
    gen[b] = GREEN
    return gen, true, np.stack([a, b]), bg


# --- metrics -----------------------------------------------------------------------------------


def test_found_object_scores_perfectly():
    gen, true, masks, bg = _scene()
    s = pm.score_frame(gen, true, masks, NO_OTHERS, bg)
    np.testing.assert_array_equal(s["hit"], [1, 1])
    np.testing.assert_array_equal(s["shape_iou"], [1, 1])
    np.testing.assert_array_equal(s["colour_error"], [0, 0])
    np.testing.assert_array_equal(s["position_error_px"], [0, 0])
    np.testing.assert_array_equal(s["apart"], [1, 1])
    assert s["psnr"] == pm.PSNR_CAP_DB and s["background_psnr"] == pm.PSNR_CAP_DB
    assert s["ssim"] == pytest.approx(1.0)
    np.testing.assert_array_equal(s["found"], masks)


def test_shifted_object_has_the_position_error_of_the_shift():
    gen, true, masks, bg = _scene(shift=3)
    sim = np.array([[24.0, 30.0], [46.0, 40.0]])
    s = pm.score_frame(gen, true, masks, NO_OTHERS, bg, sim_centroids_px=sim)
    np.testing.assert_allclose(s["position_error_px"], [3.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(s["sim_position_error_px"], [4.0, 0.0], atol=1e-9)
    assert s["hit"][0] == 1 and 0 < s["shape_iou"][0] < 1 and s["colour_error"][0] > 10
    assert s["size_ratio"][0] == pytest.approx(1.0)
    assert s["psnr"] < 40


def test_missing_object_is_a_miss_with_zero_iou():
    gen, true, masks, bg = _scene(drop_first=True)
    s = pm.score_frame(gen, true, masks, NO_OTHERS, bg)
    assert s["hit"][0] == 0 and s["shape_iou"][0] == 0 and s["size_ratio"][0] == 0
    assert np.isnan(s["position_error_px"][0])
    assert s["colour_error"][0] > 50
    assert s["hit"][1] == 1 and s["shape_iou"][1] == 1


def test_far_component_of_the_same_colour_is_not_found():
    gen, true, masks, bg = _scene()
    gen = bg.copy()
    gen[_disc(55, 8, 6)] = RED  # far from the true position: another thing
    gen[masks[1]] = GREEN
    s = pm.score_frame(gen, true, masks, NO_OTHERS, bg)
    assert s["hit"][0] == 0


def test_touching_objects_are_not_apart_and_invisible_ones_are_not_scored():
    bg = _background()
    a, b = _disc(20, 30, 5), _disc(31, 30, 5)
    true = bg.copy()
    true[a], true[b] = RED, GREEN
    masks = np.stack([a, b, np.zeros_like(a)])
    s = pm.score_frame(true, true, masks, NO_OTHERS, bg)
    np.testing.assert_array_equal(s["apart"][:2], [0, 0])
    np.testing.assert_array_equal(s["visible"], [1, 1, 0])
    assert np.isnan(s["hit"][2]) and np.isnan(s["shape_iou"][2])


def test_label_components_is_eight_connected():
    masks = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 0, 0], [1, 1, 0, 1]], bool)
    labels = pm.label_components(masks)
    assert labels[0, 0] == labels[1, 1] != labels[0, 3]
    assert labels[0, 3] == labels[1, 3]
    assert len({labels[0, 0], labels[0, 3], labels[3, 0], labels[3, 3]}) == 4
    assert (labels[~masks] == 0).all()


def test_ssim_and_psnr_of_noise():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert np.allclose(pm.ssim(a, a), 1.0)
    assert (pm.ssim(a, b) < 0.99).all()
    assert (pm.psnr(a, b) < 40).all() and (pm.psnr(a, a) == pm.PSNR_CAP_DB).all()


def test_metrics_reject_bad_input_naming_it():
    gen, true, masks, bg = _scene()
    with pytest.raises(ValueError, match="uint8"):
        pm.score_frame(gen.astype(np.float32), true, masks, NO_OTHERS, bg)
    with pytest.raises(ValueError, match=r"got \(1, 63, 64, 3\)"):
        pm.score_frames(gen[None], true[None, 1:], masks[None], NO_OTHERS[None], bg[None])


# --- programs, baseline, config ----------------------------------------------------------------


@pytest.mark.parametrize("name", PROGRAMS)
def test_programs_stay_in_range_and_in_view(name):
    rng = np.random.default_rng(1)
    start = np.array([[10.0, 50.0], [40.0, 20.0]])
    actions = action_program(name, rng, 100, 2, 64, 0.125, start=start)
    assert actions.shape == (100, 2, 2) and actions.dtype == np.float32
    px = actions * 0.125 * 32  # pixels per step
    speed = np.linalg.norm(px, axis=-1)
    assert speed.max() <= 2.5 + 1e-5
    path = start + np.cumsum(px, axis=0)
    assert path.min() >= 0 and path.max() <= 63


def test_program_rejects_unknown_name():
    with pytest.raises(ValueError, match="random"):
        action_program("zigzag", np.random.default_rng(0), 4, 1, 64)


def test_copy_paste_moves_object_by_whole_pixels():
    gen, true, masks, bg = _scene()
    cp = CopyPaste(true, masks[:1], max_translation=0.125)
    for _ in range(3):
        cp.step(np.array([[0.5, 0.25]]))  # 2 px right, 1 px down a step
    moved = np.roll(np.roll(masks[0], 6, axis=1), 3, axis=0)
    np.testing.assert_array_equal(cp.objects[0], moved)
    assert (cp.frame[moved] == RED).all()
    np.testing.assert_allclose(cp.centroids_px[0], [26.0, 33.0], atol=1e-9)


def test_config_rejects_bad_values_naming_the_choices():
    with pytest.raises(ValueError, match=r"'random', 'line', 'square'"):
        PairedConfig(program="zigzag")
    with pytest.raises(ValueError, match="sprites"):
        PairedConfig(world="bair")
    with pytest.raises(ValueError, match="objects"):
        PairedConfig(objects=(0,))
    assert PairedConfig(episodes=5, objects=(1, 2)).episodes_per_group() == [3, 2]


def test_scene_looks_reach_the_twins_and_the_evaluations_own_fields_are_refused():
    from lcvg_env.world.scene import VARIED_SHAPES, SceneConfig
    from training.paired import _reset_twins

    with pytest.raises(ValueError, match=r"scene.style='varied'.*give --style"):
        PairedConfig(scene=SceneConfig(style="varied"))
    big = PairedConfig(style="varied", scene=SceneConfig(radius=(0.2, 0.22), texture=0.3))
    areas = {}
    for name, config in (("default", PairedConfig(style="varied")), ("big", big)):
        twins = _reset_twins(config, 1, np.arange(4), 64)
        scene = twins[0].scene_config
        assert scene.style == "varied" and scene.objects == (1, 1)
        assert scene.shapes == VARIED_SHAPES
        areas[name] = np.mean([twin.true_masks().sum() for twin in twins])
    assert scene.radius == (0.2, 0.22) and scene.texture == 0.3
    assert areas["big"] > 2 * areas["default"]


def test_summary_keys_and_pooling():
    e, t, k = 2, 20, 2
    arrays = {key: np.ones((e, t, k)) for key in pm.OBJECT_METRICS}
    arrays["position_error_px"][:] = 3.0
    arrays["visible"][:, :, 1] = 0
    for key in pm.OBJECT_METRICS:
        if key != "visible":
            arrays[key][:, :, 1] = np.nan
    for key in pm.FRAME_METRICS:
        arrays[key] = np.full((e, t), 30.0)
    arrays["colour_error"][0, :, 0] = 40.0  # episode 0's object overlaps another
    arrays["apart"][0, :, 0] = 0
    out = summarize_arrays(arrays, "model")
    assert out["model/position_rmse_px@16"] == pytest.approx(3.0)
    assert out["model/colour_error@16"] == pytest.approx(20.5)
    assert out["model/colour_error_apart@16"] == pytest.approx(1.0)
    assert out["model/hit_rate@mean"] == 1.0
    assert "model/psnr@1" in out and "model/psnr@50" not in out


# --- CLI ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "choices"),
    [("--program", "zigzag", "'random', 'line', 'square'"), ("--world", "bair", "'sprites'"),
     ("--style", "fancy", "'classic', 'varied'")])
def test_cli_rejects_unknown_choices(tmp_path, capsys, flag, value, choices):
    argv = ["--world", "sprites", "--checkpoint", "sprites_small.safetensors",
            "--out", str(tmp_path), flag, value]
    with pytest.raises(SystemExit) as info:
        cli.eval_main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert value in err and choices in err


def test_cli_takes_scene_looks_but_not_the_fields_the_evaluation_sets(tmp_path, capsys):
    base = ["--world", "sprites", "--checkpoint", "x", "--out", str(tmp_path)]
    assert cli.eval_main([*base, "--scene.noise-std", "5", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["scene"]["noise_std"] == 5.0
    with pytest.raises(SystemExit):
        cli.eval_main([*base, "--scene.style", "varied"])
    assert "scene.style='varied'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a paired option without --world
        cli.eval_main(["--checkpoint", "x", "--out", str(tmp_path), "--scene.texture", "0.3"])
    assert "--scene.texture belong to the paired evaluation" in capsys.readouterr().err


def test_cli_rejects_data_with_world_and_world_options_without(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.eval_main(["--world", "sprites", "--checkpoint", "x", "--out", str(tmp_path),
                       "--data", str(tmp_path)])
    assert "--data" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.eval_main(["--checkpoint", "x", "--out", str(tmp_path), "--episodes", "3"])
    assert "--world" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.eval_main(["--checkpoint", "x", "--out", str(tmp_path)])
    assert "--data" in capsys.readouterr().err


# --- against the twin ----------------------------------------------------------------------------


def test_twin_scored_against_itself_is_perfect_up_to_antialiased_rims():
    from lcvg_env.world.twin import SpritesRealEnv

    ious = []
    for style, seed in (("classic", 0), ("classic", 1), ("varied", 2)):
        twin = SpritesRealEnv(num_objects=2, style=style, scene_objects=(2, 3))
        twin.reset(seed=seed)
        for _ in range(4):
            twin.step(np.array([0.5, 0.25, -0.25, 0.5], np.float32))
            frame, masks = twin.frame, twin.true_masks()
            others = np.delete(twin.all_masks(), twin.controlled, axis=0)
            s = pm.score_frame(frame, frame, masks, others, twin.background())
            seen = s["visible"] > 0
            assert seen.any()
            np.testing.assert_array_equal(s["hit"][seen], 1)
            np.testing.assert_array_equal(s["colour_error"][seen], 0)
            np.testing.assert_allclose(s["position_error_px"][seen], 0, atol=0.6)
            assert s["background_psnr"] > 60 and s["psnr"] == pm.PSNR_CAP_DB
            ious.extend(s["shape_iou"][seen])
    # found by colour: only antialiased rim pixels of about half coverage can differ
    assert np.mean(ious) > 0.96 and np.min(ious) > 0.85


def test_copy_paste_matches_whole_pixel_translations_of_an_isolated_object():
    from lcvg_env.world.scene import SceneConfig
    from lcvg_env.world.twin import SpritesRealEnv

    twin = SpritesRealEnv(num_objects=1, noise=False,
                          scene_config=SceneConfig(objects=(1, 1), style="classic"))
    twin.reset(seed=3)
    x = twin.observe()[1]["centroids_px"][0, 0]
    action = np.array([[0.5 if x < 31.5 else -0.5, 0.0]], np.float32)  # 2 px toward the centre
    cp = CopyPaste(twin.frame, twin.true_masks())
    for _ in range(13):  # 26 px: the left-behind copy is out of the search radius
        twin.step(action.reshape(-1))
        cp.step(action)
    s = pm.score_frame(cp.frame, twin.frame, twin.true_masks(), NO_OTHERS, twin.background(),
                       sim_centroids_px=cp.centroids_px)
    assert s["hit"][0] == 1 and s["shape_iou"][0] > 0.97
    assert s["colour_error"][0] < 2.0 and s["position_error_px"][0] < 0.3
    assert s["sim_position_error_px"][0] < 0.3


def test_cli_paired_end_to_end(tmp_path, capsys):
    out = tmp_path / "paired"
    argv = ["--world", "sprites", "--checkpoint", "lcvg_env/assets/sprites_small.safetensors",
            "--episodes", "2", "--steps", "4", "--program", "square", "--seed", "1",
            "--style", "classic", "--tracking", "carry", "--device", "cpu", "--out", str(out)]
    assert cli.eval_main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 2 and summary["steps"] == 4
    assert summary["episodes_per_objects"] == [1, 1]
    for system in ("model", "copy_paste"):
        for metric in ("shape_iou", "hit_rate", "position_rmse_px", "psnr", "ssim"):
            assert f"{system}/{metric}@1" in summary and f"{system}/{metric}@mean" in summary
        assert f"{system}/shape_iou@16" not in summary
    assert summary["copy_paste/hit_rate@1"] == 1.0
    for name in ("eval.json", "contact_sheet.png", "side_by_side.gif", "errors.png"):
        assert (out / name).stat().st_size > 0
    saved = json.loads((out / "eval.json").read_text())
    assert saved["summary"]["model/psnr@mean"] == summary["model/psnr@mean"]
    assert len(saved["per_step"]["model"]["shape_iou"]) == 4


def test_cli_paired_rejects_a_checkpoint_of_another_size(tmp_path, capsys):
    from lcvg_env.models import LayeredGenerator, ModelConfig

    small = LayeredGenerator(ModelConfig.tiny()).save(tmp_path / "tiny32.safetensors")  # 32x32
    argv = ["--world", "sprites", "--checkpoint", str(small), "--episodes",
            "1", "--steps", "1", "--out", str(tmp_path)]
    assert cli.eval_main(argv) == 2
    err = capsys.readouterr().err
    assert "64x64" in err and "32x32" in err
