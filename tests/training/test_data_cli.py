"""``lcvg-data``: every subcommand in-process at a tiny size, and the error paths."""

from __future__ import annotations

import argparse
import json

import pytest

from training.data import cli
from training.data.ground_truth import load_ground_truth


def test_make_sprites_and_info(tmp_path, capsys):
    out = tmp_path / "sprites"
    rc = cli.main(["make", "sprites", "--out", str(out), "--clips", "5", "--size", "16",
                   "--frames", "4", "--seed", "3", "--objects", "1", "--workers", "1", "--quiet"])
    assert rc == 0
    assert "wrote 5 sprite clips" in capsys.readouterr().out
    gt = load_ground_truth(out / "train" / "00000")
    assert gt is not None and gt.num_objects == 1 and gt.size == (16, 16)
    assert cli.main(["info", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["splits"]["train"]["clips"] == 3
    assert "ground truth:" in report["splits"]["train"]["sample"]
    assert cli.main(["info", str(out), "--split", "val"]) == 0
    assert "val: clips 1" in capsys.readouterr().out


def test_make_sprites_varied_style_and_bad_style(tmp_path, capsys):
    from lcvg_env.configs import field_types, literal_choices
    from lcvg_env.world.scene import STYLES

    assert literal_choices(field_types(cli.SpritesMakeConfig)["style"]) == STYLES
    out = tmp_path / "varied"
    rc = cli.main(["make", "sprites", "--out", str(out), "--clips", "2", "--size", "16",
                   "--frames", "3", "--style", "varied", "--workers", "1", "--quiet"])
    assert rc == 0
    info = json.loads((out / "info.json").read_text())
    assert info["config"]["style"] == "varied" and "heart" in info["config"]["shapes"]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(["make", "sprites", "--out", str(tmp_path / "x"), "--clips", "2", "--style",
                  "fancy"])
    err = capsys.readouterr().err
    assert "'fancy'" in err and "classic" in err and "varied" in err


def test_errors_are_reported_not_raised(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["make", "sprites", "--out", str(out), "--clips", "2", "--size", "16", "--frames",
            "3", "--workers", "1", "--quiet"]
    assert cli.main(args) == 0
    assert cli.main(args) == 1  # not empty
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["make", "sprites", "--out", str(out), "--clips", "0"])
    with pytest.raises(SystemExit):
        cli.main(["make", "sprites", "--out", str(out), "--clips", "2", "--objects", "3-1"])
    assert cli.main(["info", str(tmp_path / "nothing")]) == 1
    assert cli.main(["convert-bair", str(tmp_path / "nothing"), str(tmp_path / "o")]) == 1


def test_sim_subcommands_dispatch_lazily(monkeypatch):
    called = {}

    class FakeModule:
        @staticmethod
        def main_make(args: argparse.Namespace) -> int:
            called.update(vars(args))
            return 0

    def fake_import(name: str):
        called["module"] = name
        return FakeModule

    monkeypatch.setattr(cli.importlib, "import_module", fake_import)
    assert cli.main(["make", "atari", "--game", "pong", "--out", "x", "--clips", "2",
                     "--size", "32", "--frames", "5", "--seed", "4"]) == 0
    assert called["module"] == "training.data.atari"
    assert (called["game"], called["clips"], called["size"], called["frames"], called["seed"]) == (
        "pong", 2, 32, 5, 4)
    assert cli.main(["make", "fetchpush", "--out", "y", "--clips", "1"]) == 0
    assert called["module"] == "training.data.fetchpush" and called["out"] == "y"


def test_missing_sim_extra_gives_a_clear_message(monkeypatch, capsys):
    def missing(name: str):
        raise ModuleNotFoundError("No module named 'mujoco'", name="mujoco")

    monkeypatch.setattr(cli.importlib, "import_module", missing)
    assert cli.main(["make", "fetchpush", "--out", "x", "--clips", "1"]) == 2
    err = capsys.readouterr().err
    assert "[sim] extra" in err and "pip install -e '.[sim]'" in err and "mujoco" in err


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for command in ("make", "convert-bair", "convert-videos", "info"):
        assert command in text


def test_convert_bair_and_videos(tmp_path, capsys):
    tfrecord = pytest.importorskip("tfrecord")
    import numpy as np

    (tmp_path / "bair" / "train").mkdir(parents=True)
    writer = tfrecord.TFRecordWriter(str(tmp_path / "bair" / "train" / "traj.tfrecords"))
    frames = np.random.default_rng(0).integers(0, 256, (30, 64, 64, 3), dtype=np.uint8)
    datum = {}
    for t in range(30):
        datum[f"{t}/image_aux1/encoded"] = (frames[t].tobytes(), "byte")
        datum[f"{t}/endeffector_pos"] = ([0.1, 0.2, 0.3], "float")
        datum[f"{t}/action"] = ([1.0, 0.0, 0.0, 0.0], "float")
    writer.write(datum)
    writer.close()
    out = tmp_path / "bair_out"
    assert cli.main(["convert-bair", str(tmp_path / "bair"), str(out), "--quiet"]) == 0
    assert "wrote 1 BAIR clips" in capsys.readouterr().out
    assert len(list((out / "train" / "00000").glob("*.png"))) == 30

    pytest.importorskip("av")
    from training.data.video import write_video

    write_video(tmp_path / "videos" / "a.mp4", frames[:6])
    assert cli.main(["convert-videos", str(tmp_path / "videos"), str(tmp_path / "v"),
                     "--size", "32", "--val-fraction", "0", "--test-fraction", "0"]) == 0
    assert len(list((tmp_path / "v" / "train" / "00000").glob("*.png"))) == 6


@pytest.mark.parametrize("command", [["make", "sprites"], ["make", "fetchpush"], ["make", "atari"],
                                     ["convert-bair"], ["convert-videos"], ["info"]])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([*command, "--help"])
    assert info.value.code == 0
    assert "--" in capsys.readouterr().out


def test_make_prints_its_config_and_checks_it(capsys):
    assert cli.main(["make", "sprites", "--out", "x", "--clips", "4", "--objects", "2-3",
                     "--style", "varied", "--noise-std", "0", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["objects"] == [2, 3] and printed["style"] == "varied"
    assert printed["noise_std"] == 0.0 and printed["quiet"] is False
    with pytest.raises(SystemExit):
        cli.main(["make", "sprites", "--out", "x", "--clips", "2", "--png-level", "10"])
    assert "png_level" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["make", "atari", "--out", "x", "--clips", "2", "--game", "chess"])
    err = capsys.readouterr().err
    assert "'chess'" in err and "'breakout', 'pong', 'tennis'" in err
    with pytest.raises(ValueError, match=r"AtariMakeConfig.game must be one of"):
        cli.AtariMakeConfig(out="x", clips=1, game="chess")


def test_atari_games_are_the_literal_choices():
    from typing import get_args

    from training.data.atari import GAMES, Game

    assert get_args(Game) == tuple(GAMES)
