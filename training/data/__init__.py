"""Training data: datasets of frame pairs and clips, ground truth, generators and converters.

Public API (imported lazily, so ``lcvg-data`` starts without loading torch):

- :class:`FramePairDataset`, :class:`ClipDataset`: PyTorch datasets over the clip layout
  ``root/{train,val,test}/NNNNN/00000.png ...`` (or a flat folder, or video files).
- :class:`GroundTruth`, :func:`load_ground_truth`, :func:`save_ground_truth`,
  :func:`ground_truth_from_masks`, :func:`locate_objects`: the ``ground_truth.npz`` sidecar and
  the colour-key object locator used by evaluation.
- :func:`generate_sprites`, :class:`SpritesConfig`, :func:`render_clip`: procedural sprites.
- :func:`convert_bair`: BAIR TFRecords -> the layout; :func:`convert_videos`,
  :func:`read_video`, :func:`write_video`: video files.
- :func:`scan_clips`, :class:`LayoutIndex`, :class:`DataWarning`: the layout itself.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FramePairDataset": "training.data.pairs",
    "ClipDataset": "training.data.clips",
    "GroundTruth": "training.data.ground_truth",
    "GROUND_TRUTH_FILE": "training.data.ground_truth",
    "load_ground_truth": "training.data.ground_truth",
    "save_ground_truth": "training.data.ground_truth",
    "ground_truth_from_masks": "training.data.ground_truth",
    "locate_objects": "training.data.ground_truth",
    "SpritesConfig": "training.data.sprites",
    "generate_sprites": "training.data.sprites",
    "render_clip": "training.data.sprites",
    "convert_bair": "training.data.bair",
    "convert_videos": "training.data.video",
    "read_video": "training.data.video",
    "write_video": "training.data.video",
    "scan_clips": "training.data.layout",
    "LayoutIndex": "training.data.layout",
    "DataWarning": "training.data.layout",
    "SPLITS": "training.data.layout",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'training.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
