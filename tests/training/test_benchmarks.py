"""The training benchmark runs and reports what it measured (it never asserts a time)."""

from __future__ import annotations

import json

from benchmarks import train_step


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
