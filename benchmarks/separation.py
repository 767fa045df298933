"""How well the objects M finds at reset match the true objects, with and without separation.

For twin scenes (``lcvg_env.world``), M's binarised mask of the first frame is split into objects
by ``lcvg_env.control.object_masks`` (connected components) and by
``lcvg_env.control.separate_objects`` (components cut apart by colour), and the separated objects
take the border pixels M left out (``lcvg_env.compositing.take_borders``: what the sprites ids
start from); every true object is matched with the found object of highest IoU. Prints one JSON
object per style: for each of the three, the fraction of true objects matched with IoU > 0.7,
their mean best IoU and the fraction whose centroid is found within 1 px; and how many true
objects separation made worse.

    python -m benchmarks.separation [--scenes 200] [--seed 7000] [--styles varied classic]
        [--scene.outline 1.5 ...]

The flags are the fields of :class:`SeparationConfig` (``--print-config`` prints the resolved
config and exits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.config_checks import print_per_style
from lcvg_env import compositing
from lcvg_env import control as ctl
from lcvg_env.configs import check_choices, check_ints
from lcvg_env.env import load_model
from lcvg_env.registration import SPRITES_CHECKPOINT
from lcvg_env.world.scene import SceneConfig, Style, check_looks_only, with_looks
from lcvg_env.world.twin import SpritesRealEnv

MAX_OBJECTS = 8
"""Objects taken from each frame (more than any scene holds)."""

SET_BY_BENCHMARK = ("style", "size", "shapes")
"""Scene fields the benchmark sets itself: the style measured, the model's resolution and the
style's shapes."""


@dataclass(frozen=True)
class SeparationConfig:
    """What ``python -m benchmarks.separation`` scores."""

    scenes: int = 200
    """Twin scenes per style."""
    seed: int = 7000
    """Seed of the first scene (the others follow: seed + 1, ...)."""
    styles: tuple[Style, ...] = ("varied", "classic")
    """Scene styles, one JSON object each (varied, classic)."""
    checkpoint: str = SPRITES_CHECKPOINT
    """Checkpoint whose mask network M finds the objects."""
    scene: SceneConfig = SceneConfig()
    """How the scenes look beyond the style (``lcvg_env.world.scene.SceneConfig``: outlines,
    texture, sizes, ...); its :data:`SET_BY_BENCHMARK` fields are the benchmark's own (each of
    :attr:`styles` with its shapes, the model's resolution) and must keep their defaults."""

    def __post_init__(self) -> None:
        """Validate the counts, styles and scene, naming the offending value."""
        check_ints(self, {"scenes": 1, "seed": 0})
        check_choices(self)
        check_looks_only(self.scene, SET_BY_BENCHMARK, "the benchmark", "give --styles instead")


def _best_matches(truth: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best IoU (O,) and centroid distance in pixels (O,) of each true mask among ``found``."""
    ious, offsets = [], []
    for mask in truth:
        inter = (found & mask).sum(axis=(1, 2))
        union = (found | mask).sum(axis=(1, 2))
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        best = int(iou.argmax())
        ious.append(float(iou[best]))
        if found[best].any():
            (ty, tx), (fy, fx) = np.nonzero(mask), np.nonzero(found[best])
            offsets.append(float(np.hypot(tx.mean() - fx.mean(), ty.mean() - fy.mean())))
        else:
            offsets.append(float("inf"))
    return np.array(ious), np.array(offsets)


def first_frames(style: str, scenes: int, seed: int, size: int,
                 looks: SceneConfig | None = None) -> tuple[list[SpritesRealEnv], torch.Tensor]:
    """Twins reset with seeds ``seed``, ``seed + 1``, ... and their first frames (n, 3, S, S)
    in [-1, 1]; ``looks``: the scenes' other fields (default: the style's own)."""
    scene = with_looks(looks or SceneConfig(), style=style, size=size)
    twins = [SpritesRealEnv(style=style, size=size, scene_config=scene) for _ in range(scenes)]
    for i, twin in enumerate(twins):
        twin.reset(seed=seed + i)
    frames = torch.from_numpy(np.stack([t.frame for t in twins])).permute(0, 3, 1, 2)
    return twins, frames.float() / 127.5 - 1.0


def measure(config: SeparationConfig, style: str) -> dict[str, object]:
    """The scores of both splittings on ``config.scenes`` twin scenes of ``style``."""
    scenes, seed = config.scenes, config.seed
    model = load_model(config.checkpoint, "cpu")
    twins, frames = first_frames(style, scenes, seed, int(model.config.resolution[0]),
                                 config.scene)
    with torch.inference_mode():
        masks = ctl.binarize(model.mask(frames).float())
        separated = ctl.separate_objects(frames, masks, MAX_OBJECTS)
        found = {"components": ctl.object_masks(masks, MAX_OBJECTS), "separated": separated,
                 "borders": compositing.take_borders(frames, masks, separated)}
    scores: dict[str, list[np.ndarray]] = {name: [] for name in found}
    offsets: dict[str, list[np.ndarray]] = {name: [] for name in found}
    for i, twin in enumerate(twins):
        truth = twin.all_masks().astype(bool)
        truth = truth[truth.any(axis=(1, 2))]
        for name, objects in found.items():
            iou, offset = _best_matches(truth, objects[i].numpy() > 0.5)
            scores[name].append(iou)
            offsets[name].append(offset)
    result: dict[str, object] = {"style": style, "scenes": scenes, "seed": seed,
                                 "objects": int(sum(len(x) for x in scores["components"]))}
    for name in found:
        iou, offset = np.concatenate(scores[name]), np.concatenate(offsets[name])
        result[name] = {"matched_iou_above_0.7": round(float((iou > 0.7).mean()), 3),
                        "mean_best_iou": round(float(iou.mean()), 3),
                        "centroid_within_1px": round(float((offset <= 1.0).mean()), 3)}
    before = np.concatenate(scores["components"])
    after = np.concatenate(scores["separated"])
    result["made_worse"] = int(((before > 0.7) & (after <= 0.7)).sum())
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """Print one JSON object per style."""
    print_per_style(SeparationConfig, "python -m benchmarks.separation", __doc__, argv, measure)


if __name__ == "__main__":
    main()
