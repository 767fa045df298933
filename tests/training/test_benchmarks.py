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
