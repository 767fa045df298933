"""How often the depth order read at reset is right, for twin objects that hide one another.

For twin scenes (``lcvg_env.world``), every pair of objects of which one hides at least
``--min-hidden`` pixels of the other in the first frame (both showing at least 16 pixels) is
a case. Its objects are matched with objects found in the frame (best IoU above 0.5, two
different ones), either M's separated objects (``lcvg_env.control.separate_objects``, what the
simulator uses) or the true visible masks (the depth cue alone, without M's errors), and
``lcvg_env.control.infer_occlusion`` orders the found objects and completes those behind.
Prints one JSON object per style and source: the cases, how many were matched, the fraction of
matched cases put in the right order, the same fraction for index order (larger visible area
in front, the order without occlusion), and for the back objects given a hidden part
(``completed``) the mean IoU with the true whole object of what was seen and of the
completed object.

    python -m benchmarks.occlusion [--scenes 2000] [--seed 30000] [--styles varied classic]

The flags are the fields of :class:`OcclusionConfig` (``--print-config`` prints the resolved
config and exits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.config_checks import print_per_style
from benchmarks.separation import MAX_OBJECTS, first_frames
from lcvg_env import control as ctl
from lcvg_env.configs import check_choices, check_ints
from lcvg_env.env import load_model
from lcvg_env.registration import SPRITES_CHECKPOINT
from lcvg_env.world.scene import Style

MIN_VISIBLE = 16
"""Pixels an object of a case must show."""


@dataclass(frozen=True)
class OcclusionConfig:
    """What ``python -m benchmarks.occlusion`` scores."""

    scenes: int = 2000
    """Twin scenes per style."""
    seed: int = 30000
    """Seed of the first scene (the others follow: seed + 1, ...)."""
    styles: tuple[Style, ...] = ("varied", "classic")
    """Scene styles, one JSON object per style and source of objects (varied, classic)."""
    min_hidden: int = 3
    """Pixels one object of a case must hide of the other."""
    checkpoint: str = SPRITES_CHECKPOINT
    """Checkpoint whose mask network M finds the objects."""

    def __post_init__(self) -> None:
        """Validate the counts and styles, naming the offending value."""
        check_ints(self, {"scenes": 1, "seed": 0, "min_hidden": 0})
        check_choices(self)


def _cases(visible: np.ndarray, full: np.ndarray, min_hidden: int) -> list[tuple[int, int]]:
    """(front, back) indices of the pairs in which one object hides ``min_hidden`` px of the
    other (visible, full: bool (K, H, W))."""
    shown = visible.sum(axis=(1, 2)) >= MIN_VISIBLE
    cases = []
    for a in range(len(visible)):
        for b in range(a + 1, len(visible)):
            if not (shown[a] and shown[b]):
                continue
            a_hidden_by_b = int((full[a] & visible[b]).sum())
            b_hidden_by_a = int((full[b] & visible[a]).sum())
            if max(a_hidden_by_b, b_hidden_by_a) >= min_hidden:
                cases.append((b, a) if a_hidden_by_b > b_hidden_by_a else (a, b))
    return cases


def _match(mask: np.ndarray, found: np.ndarray) -> int | None:
    """Index of the found (K, H, W) object of best IoU with ``mask`` (None: none above 0.5)."""
    inter = (found & mask).sum(axis=(1, 2))
    union = (found | mask).sum(axis=(1, 2))
    iou = inter / np.maximum(union, 1)
    best = int(iou.argmax())
    return best if iou[best] > 0.5 else None


def measure(config: OcclusionConfig, style: str) -> list[dict[str, object]]:
    """The scores of M's objects and of the true visible masks on ``config.scenes`` twin
    scenes of ``style``."""
    scenes, seed, min_hidden = config.scenes, config.seed, config.min_hidden
    model = load_model(config.checkpoint, "cpu")
    twins, frames = first_frames(style, scenes, seed, int(model.config.resolution[0]))
    masks_of = [(twin.all_masks(), twin.full_masks()) for twin in twins]
    truth = np.zeros((scenes, MAX_OBJECTS, *frames.shape[2:]), dtype=np.float32)
    for i, (visible, _) in enumerate(masks_of):
        largest_first = np.argsort(-visible.sum(axis=(1, 2)), kind="stable")
        truth[i, : len(visible)] = visible[largest_first]  # M's objects come in that order
    with torch.inference_mode():
        masks = ctl.binarize(model.mask(frames).float())
        found = {"separated": ctl.separate_objects(frames, masks, MAX_OBJECTS),
                 "true_masks": torch.from_numpy(truth)}
        occlusion = {name: ctl.infer_occlusion(objects) for name, objects in found.items()}
    results = []
    for name, objects in found.items():
        cases = matched = right = by_index = 0
        seen_iou, completed_iou = [], []
        for i, (visible, full) in enumerate(masks_of):
            found_i = objects[i].numpy() > 0.5
            hidden_i = occlusion[name].hidden[i].numpy() > 0.5
            rank = occlusion[name].depth[i].argsort().numpy()  # rank[object]: 0 front
            for front, back in _cases(visible, full, min_hidden):
                cases += 1
                f, b = _match(visible[front], found_i), _match(visible[back], found_i)
                if f is None or b is None or f == b:
                    continue
                matched += 1
                right += int(rank[f] < rank[b])
                by_index += int(f < b)
                if hidden_i[b].any():
                    seen_iou.append(_iou(found_i[b], full[back]))
                    completed_iou.append(_iou(found_i[b] | hidden_i[b], full[back]))
        results.append({"style": style, "objects": name, "scenes": scenes, "seed": seed,
                        "cases": cases, "matched": matched,
                        "depth_right": round(right / max(matched, 1), 3),
                        "index_order_right": round(by_index / max(matched, 1), 3),
                        "completed": len(seen_iou),
                        "whole_iou_seen": round(float(np.mean(seen_iou or [0.0])), 3),
                        "whole_iou_completed": round(float(np.mean(completed_iou or [0.0])), 3)})
    return results


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(int((a | b).sum()), 1))


def main(argv: Sequence[str] | None = None) -> None:
    """Print one JSON object per style and source of objects."""
    print_per_style(OcclusionConfig, "python -m benchmarks.occlusion", __doc__, argv, measure)


if __name__ == "__main__":
    main()
