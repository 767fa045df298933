from __future__ import annotations

import numpy as np
import pytest

from lcvg_env.play import action_from_keys, action_toward, main
from lcvg_env.render import compose, draw_cross, outline, save_video, tile, upscale


def test_keys_to_actions() -> None:
    action = action_from_keys({"right", "up"}, "position", 2, selected=1)
    np.testing.assert_array_equal(action, [0, 0, 1, -1])
    affine = action_from_keys({"left", "e", "x"}, "affine", 1)
    np.testing.assert_array_equal(affine, [-1, 0, 1, 1, 1, 0])
    assert action_from_keys(set(), "position", 1).tolist() == [0.0, 0.0]


def test_click_steers_toward_the_point() -> None:
    action = action_toward(np.array([0.5, 0.0]), np.array([0.0, 0.0]), "position", 1, 0, 0.125)
    np.testing.assert_array_equal(action, [1.0, 0.0])


def test_render_helpers(tmp_path) -> None:
    frame = np.zeros((8, 8, 3), np.uint8)
    objects = np.zeros((1, 8, 8))
    objects[0, 2:4, 2:4] = 1
    out = compose(frame, objects=objects, foreground=objects[0], centroids=np.zeros((1, 2)),
                  targets=np.array([[0.5, 0.5]]), target_radius=0.1, scale=4)
    assert out.shape == (32, 32, 3) and out[10, 10].any()
    assert upscale(frame, 3).shape == (24, 24, 3)
    assert tile([frame] * 5, columns=2).shape == (24, 16, 3)
    assert draw_cross(frame.copy(), (4, 4), (255, 0, 0))[4, 4, 0] == 255
    assert outline(frame.copy(), objects[0], (0, 255, 0))[2, 2, 1] == 255
    path = save_video(tmp_path / "v.gif", [frame, frame + 50], fps=5)
    assert path.stat().st_size > 0
    with pytest.raises(ValueError, match="scale"):
        upscale(frame, 0)


def test_play_headless(tiny: dict, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pygame")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    out = tmp_path / "play.gif"
    code = main(["--checkpoint", tiny["checkpoint"], "--start-frames", tiny["start_frames"],
                 "--max-frames", "3", "--fps", "100", "--record", str(out), "--device", "cpu"])
    assert code == 0 and out.is_file()


def test_play_help_and_config(capsys) -> None:
    import json

    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--max-frames" in capsys.readouterr().out
    assert main(["--print-config", "--control", "affine", "--scale", "3", "--seed", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["control"], printed["scale"], printed["seed"]) == ("affine", 3, 2)
    with pytest.raises(SystemExit):
        main(["--control", "joystick"])
    assert "'position', 'affine', 'mask'" in capsys.readouterr().err
