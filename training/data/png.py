"""PNG frames written and read fast.

``write_png(path, frame, level=0)`` writes an RGB PNG whose pixel rows are unfiltered and whose
deflate stream is "stored" (level 0, no compression): any PNG reader opens it, and it encodes
and decodes many times faster than Pillow's compressed PNGs (docs/performance.md, "Data"), at
the price of raw-size files (12 KiB a 64x64 frame). ``level`` 1-9 writes a compressed PNG with
Pillow instead (adaptive filters, about half the size).

``read_png_fast`` decodes exactly such unfiltered 8-bit RGB PNGs (any deflate level) with zlib
and numpy, and returns None for every other PNG, which the caller then hands to Pillow.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
from PIL import Image

__all__ = ["read_png_fast", "write_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def write_png(path: str | os.PathLike[str], frame: np.ndarray, level: int = 0) -> None:
    """Write a uint8 (H, W, 3) RGB frame as PNG.

    Args:
        path: destination file.
        frame: uint8 (H, W, 3).
        level: 0 = unfiltered, stored (fastest to write and read); 1-9 = Pillow's compressed PNG.
    """
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"frame must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    if not 0 <= level <= 9:
        raise ValueError(f"level must be in 0..9, got {level}")
    if level > 0:
        Image.fromarray(np.ascontiguousarray(frame)).save(path, compress_level=level)
        return
    h, w, _ = frame.shape
    rows = np.empty((h, 1 + 3 * w), dtype=np.uint8)
    rows[:, 0] = 0  # filter type None on every row
    rows[:, 1:] = frame.reshape(h, 3 * w)
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    data = (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 0))
        + _chunk(b"IEND", b"")
    )
    with open(path, "wb") as f:
        f.write(data)


def read_png_fast(path: str | os.PathLike[str]) -> np.ndarray | None:
    """Decode an unfiltered, non-interlaced 8-bit RGB PNG to uint8 (H, W, 3).

    Returns:
        The frame, or None when the file is any other kind of PNG (use Pillow then).

    Raises:
        OSError: a truncated or corrupt file of that kind.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != _SIGNATURE or data[12:16] != b"IHDR":
        return None
    if len(data) < 29:
        raise OSError(f"truncated PNG (no whole IHDR): {path}")
    w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if depth != 8 or color != 2 or interlace != 0:
        return None
    pos = 33  # after IHDR
    parts = []
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            parts.append(data[pos + 8 : pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    else:
        raise OSError(f"truncated PNG (no IEND): {path}")
    try:
        raw = zlib.decompress(b"".join(parts))
    except zlib.error as exc:
        raise OSError(f"corrupt PNG data in {path}: {exc}") from exc
    stride = 1 + 3 * w
    if len(raw) != h * stride:
        raise OSError(f"PNG {path} holds {len(raw)} bytes, expected {h * stride}")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(h, stride)
    if rows[:, 0].any():
        return None  # filtered rows: let Pillow undo the filters
    return rows[:, 1:].reshape(h, w, 3)
