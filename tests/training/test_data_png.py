"""The fast PNG writer/reader: valid PNGs for every reader, exact roundtrip, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training.data.layout import read_image
from training.data.png import read_png_fast, write_png


@pytest.mark.parametrize("level", [0, 1])
def test_roundtrip_through_pillow_and_fast_reader(tmp_path, level):
    frame = np.random.default_rng(level).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    path = tmp_path / "f.png"
    write_png(path, frame, level)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), frame)
    np.testing.assert_array_equal(read_image(path), frame)
    fast = read_png_fast(path)
    if level == 0:
        np.testing.assert_array_equal(fast, frame)


def test_fast_reader_declines_other_pngs(tmp_path):
    frame = np.random.default_rng(0).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    Image.fromarray(frame[..., 0]).save(tmp_path / "grey.png")
    Image.fromarray(frame).convert("RGBA").save(tmp_path / "rgba.png")
    assert read_png_fast(tmp_path / "grey.png") is None
    assert read_png_fast(tmp_path / "rgba.png") is None
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), frame)
    assert read_image(tmp_path / "grey.png").shape == (6, 6, 3)


def test_truncated_and_invalid(tmp_path):
    frame = np.zeros((8, 8, 3), np.uint8)
    write_png(tmp_path / "a.png", frame)
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[:60])
    with pytest.raises(OSError):
        read_png_fast(tmp_path / "a.png")
    with pytest.raises(OSError):
        read_image(tmp_path / "a.png")
    with pytest.raises(ValueError, match="uint8"):
        write_png(tmp_path / "b.png", frame.astype(np.float32))
    with pytest.raises(ValueError, match="level"):
        write_png(tmp_path / "b.png", frame, level=10)
