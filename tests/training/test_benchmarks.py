"""Benchmarks run and report what they measured (they never assert a time)."""

from __future__ import annotations

import json

import pytest

from benchmarks import train_step
from tests.lcvg_env.conftest import BUNDLED


def test_train_step_benchmark_reports_both_stages(capsys):
    assert train_step.main(["--preset", "small", "--device", "cpu", "--amp", "none",
                            "--steps", "1", "--warmup", "0", "--batch-size", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["preset"] == "small" and report["device"] == "cpu"
    rows = report["results"]
    assert [row["phase"] for row in rows] == ["stage1", "stage2"]
    assert all(row["samples_per_s"] > 0 and row["steps"] == 1 for row in rows)
    assert rows[0]["parameters"] > 0


def test_soak_benchmark_reports_memory_slope_bad_values_and_speed(capsys, tmp_path, one_thread):
    from benchmarks import soak
    from tests.lcvg_env.conftest import make_tiny

    checkpoint, starts = make_tiny(tmp_path)
    assert soak.main(["--num-envs", "2", "--steps", "300", "--sample-every", "50",
                      "--warmup", "2", "--device", "cpu", "--checkpoint", str(checkpoint),
                      "--start-frames", str(starts)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "soak"
    assert report["config"]["env_id"] == "LCVG-Sprites-v0" and report["config"]["num_envs"] == 2
    assert report["env_steps"] == 300 and report["vector_steps"] == 150
    assert report["episodes_ended"] == 2  # the id's 100-step limit, once per environment
    assert report["steps_per_s"] > 0
    assert isinstance(report["rss_slope_mib_per_10k_steps"], float)
    assert report["rss_mib"]["samples"] == 7 and report["rss_mib"]["max"] > 0
    assert report["nan"] == {"observations": 0, "rewards": 0}
    assert report["inf"] == {"observations": 0, "rewards": 0}


@pytest.mark.skipif(not BUNDLED, reason="bundled sprites checkpoint missing")
def test_occlusion_benchmark_scores_the_depth_order_of_hidden_pairs(capsys):
    from benchmarks import occlusion

    occlusion.main(["--scenes", "200", "--seed", "30000", "--styles", "classic"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["objects"] for row in rows] == ["separated", "true_masks"]
    found, true = rows
    assert found["cases"] == true["cases"] > 0
    assert true["matched"] == true["cases"]  # a true mask always matches itself
    assert 0 < found["matched"] <= found["cases"]
    for row in rows:
        assert 0.0 <= row["index_order_right"] <= 1.0 and 0.0 < row["depth_right"] <= 1.0
    # completing the objects behind brings them closer to the true whole objects
    assert true["completed"] > 0 and true["whole_iou_completed"] > true["whole_iou_seen"]


def test_separation_benchmark_scores_outlined_scenes_after_the_borders(capsys):
    from benchmarks import separation

    separation.main(["--scenes", "12", "--styles", "varied", "--scene.outline", "1.5"])
    outlined = json.loads(capsys.readouterr().out)
    separation.main(["--scenes", "12", "--styles", "varied"])
    plain = json.loads(capsys.readouterr().out)
    assert outlined["objects"] == plain["objects"] > 12  # the same scenes, outlined
    for row in (outlined, plain):
        for found in ("components", "separated", "borders"):
            assert 0.0 < row[found]["mean_best_iou"] <= 1.0
    # M leaves much of a border out: the objects that take it back match the true ones better
    assert outlined["borders"]["mean_best_iou"] > outlined["separated"]["mean_best_iou"]
    assert outlined["components"] != plain["components"]
    with pytest.raises(SystemExit):
        separation.main(["--scene.style", "varied"])
    assert "the benchmark sets scene fields" in capsys.readouterr().err


def test_canvas_benchmark_scores_both_fills_and_the_shadows_by_background_family(capsys):
    from benchmarks import canvas

    canvas.main(["--scenes", "40", "--styles", "varied"])
    row = json.loads(capsys.readouterr().out)
    families = row["families"]
    assert row["objects"] == 2 and families["all"]["scenes"] == 40
    assert sum(f["scenes"] for name, f in families.items() if name != "all") == 40
    # striped and tiled backgrounds are continued by their period, much closer to the truth
    # than push-pull's blur; the grain of granite has no period and keeps push-pull's fill
    for name in ("stripes", "tiles"):
        assert families[name]["continued"] > 0 and families[name]["worse"] == 0
        assert families[name]["canvas_psnr"] > families[name]["push_pull_psnr"] + 3.0
    assert families["granite"]["continued"] == 0
    assert families["granite"]["canvas_psnr"] == families["granite"]["push_pull_psnr"]
    # the drop shadows read and taken out: the known canvas beside the objects comes closer
    # to the shadow-free background, and so do the holes filled from it
    every = families["all"]
    assert every["shadow_read"] >= 15  # of 40; grain hides most shadows from the fit
    assert every["unshadowed_ring_psnr"] > every["ring_psnr"] + 1.0
    assert every["unshadowed_canvas_psnr"] > every["canvas_psnr"]
    with pytest.raises(SystemExit):
        canvas.main(["--scene.objects", "3,3"])
    assert "give --styles, --size or --objects instead" in capsys.readouterr().err


def test_twin_full_masks_add_the_hidden_parts():
    from lcvg_env.world.twin import SpritesRealEnv

    twin = SpritesRealEnv(style="classic", size=64)
    hiding = 0
    for seed in range(30000, 30040):
        twin.reset(seed=seed)
        visible, full = twin.all_masks(), twin.full_masks()
        assert full.shape == visible.shape and not (visible & ~full).any()
        hidden = full & ~visible
        # a hidden pixel of one object is a visible pixel of another
        assert not (hidden & ~visible.any(axis=0)).any()
        hiding += int(hidden.any())
    assert hiding > 0
