"""How truly the canvas's holes are filled: the background the objects of a first frame hide.

For twin scenes (``lcvg_env.world``), the pixels of the objects and a margin around them
(``lcvg_env.tracking.START_MARGIN_PX``; the true visible masks, so that M's errors play no part)
are unknown, as at a composite model's reset; they are filled by push-pull
(``lcvg_env.compositing.fill_holes``) and by what the simulator uses
(``lcvg_env.compositing.fill_canvas``: the background's own period where it repeats), and
compared with the true background (``SpritesRealEnv.background``) on the unknown pixels.
Prints one JSON object per style: per background family and over all scenes, the scenes, the
mean PSNR of the fill of both, how many scenes the period filled, how many it made worse
than push-pull (by more than :data:`WORSE_DB`) and the largest loss (dB; 0 when none lost).
The drop shadow (``lcvg_env.shadows``, read with every object as a caster) is scored too: how
many scenes it was read in, the holes filled from the canvas freed of it, and the known
pixels within :data:`RING_PX` of the objects, where their shadows fall, as the frame shows them
and freed of it (PSNR against the shadow-free background; "ring_worse": scenes it made worse).

    python -m benchmarks.canvas [--scenes 200] [--seed 90000] [--styles varied classic]
        [--objects 2] [--scene.background-contrast 60 ...]

The flags are the fields of :class:`CanvasConfig` (``--print-config`` prints the resolved
config and exits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.config_checks import print_per_style
from benchmarks.separation import first_frames
from lcvg_env import compositing, shadows
from lcvg_env.configs import check_choices, check_ints
from lcvg_env.tracking import START_MARGIN_PX
from lcvg_env.world.scene import SceneConfig, Style, check_looks_only, with_looks

WORSE_DB = 0.1
"""A scene whose fill is this much below push-pull's (dB) counts as made worse."""
RING_PX = 8
"""The known canvas scored with and without the drop shadow read from it: within this many
pixels of the objects (past the unknown margin), where their shadows fall."""

SET_BY_BENCHMARK = ("style", "size", "objects", "shapes")
"""Scene fields the benchmark sets itself: the style measured, the frame size, the number of
objects and the style's shapes."""


@dataclass(frozen=True)
class CanvasConfig:
    """What ``python -m benchmarks.canvas`` scores."""

    scenes: int = 200
    """Twin scenes per style."""
    seed: int = 90000
    """Seed of the first scene (the others follow: seed + 1, ...)."""
    styles: tuple[Style, ...] = ("varied", "classic")
    """Scene styles, one JSON object each (varied, classic)."""
    objects: int = 2
    """Objects in every scene (all of them hide background)."""
    size: int = 64
    """Frame side in pixels."""
    scene: SceneConfig = SceneConfig()
    """How the scenes look beyond the style (``lcvg_env.world.scene.SceneConfig``); its
    :data:`SET_BY_BENCHMARK` fields are the benchmark's own and must keep their defaults."""

    def __post_init__(self) -> None:
        """Validate the counts, styles and scene, naming the offending value."""
        check_ints(self, {"scenes": 1, "seed": 0, "objects": 1, "size": 8})
        check_choices(self)
        check_looks_only(self.scene, SET_BY_BENCHMARK, "the benchmark",
                         "give --styles, --size or --objects instead")


def _psnr(filled: torch.Tensor, truth: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """(B,) PSNR in dB over the ``where`` (B, 1, H, W) pixels of frames in [-1, 1]."""
    squared = ((filled - truth) * 127.5) ** 2 * where
    mean = squared.sum(dim=(1, 2, 3)) / (3.0 * where.sum(dim=(1, 2, 3)).clamp_min(1.0))
    return 10.0 * torch.log10(255.0**2 / mean.clamp_min(1e-10))


def measure(config: CanvasConfig, style: str) -> dict[str, object]:
    """The scores of both fills on ``config.scenes`` twin scenes of ``style``."""
    k = config.objects
    looks = with_looks(config.scene, objects=(k, k))
    twins, frames = first_frames(style, config.scenes, config.seed, config.size, looks)
    truth = torch.from_numpy(np.stack([t.background() for t in twins])).permute(0, 3, 1, 2)
    truth = truth.float() / 127.5 - 1.0
    casters = torch.from_numpy(np.stack([t.all_masks() for t in twins])).float()
    objects = casters.amax(dim=1, keepdim=True)
    known = 1.0 - compositing.dilate(objects, START_MARGIN_PX)
    ring = compositing.dilate(objects, RING_PX) * known
    with torch.inference_mode():
        pushed_fill = compositing.fill_holes(frames, known)
        filled = compositing.fill_canvas(frames, known)  # push-pull's fill where no period
        pushed = _psnr(pushed_fill, truth, 1.0 - known).numpy()
        canvas = _psnr(filled, truth, 1.0 - known).numpy()
        continued = (filled != pushed_fill).flatten(1).any(dim=1).numpy()
        shadow = shadows.fit_drop_shadow(frames, casters)
        unshadowed = shadows.remove(frames, shadow, casters)
        freed = _psnr(compositing.fill_canvas(unshadowed, known), truth, 1.0 - known).numpy()
        ring_before = _psnr(frames, truth, ring).numpy()
        ring_after = _psnr(unshadowed, truth, ring).numpy()
        read = (shadow.strength > 0).numpy()
    families = np.array([t.scene.background_family for t in twins])
    rows = {}
    for family in [*sorted(set(families)), "all"]:
        pick = families == family if family != "all" else np.ones(len(twins), dtype=bool)
        rows[family] = {"scenes": int(pick.sum()),
                        "push_pull_psnr": round(float(pushed[pick].mean()), 2),
                        "canvas_psnr": round(float(canvas[pick].mean()), 2),
                        "continued": int(continued[pick].sum()),
                        "worse": int(((pushed - canvas)[pick] > WORSE_DB).sum()),
                        "worst_loss_db": round(float(max(0.0, (pushed - canvas)[pick].max())), 2),
                        "shadow_read": int(read[pick].sum()),
                        "unshadowed_canvas_psnr": round(float(freed[pick].mean()), 2),
                        "ring_psnr": round(float(ring_before[pick].mean()), 2),
                        "unshadowed_ring_psnr": round(float(ring_after[pick].mean()), 2),
                        "ring_worse": int(((ring_before - ring_after)[pick] > WORSE_DB).sum())}
    return {"style": style, "scenes": config.scenes, "seed": config.seed, "objects": k,
            "families": rows}


def main(argv: Sequence[str] | None = None) -> None:
    """Print one JSON object per style."""
    print_per_style(CanvasConfig, "python -m benchmarks.canvas", __doc__, argv, measure)


if __name__ == "__main__":
    main()
