"""Train a composite model's light estimator (``lcvg_env.models.light``) on rendered scenes.

    python -m training.light --init runs/sprites_small/model.safetensors --out shaded.safetensors

Sprites scenes of the given styles are rendered with their true illumination (the ``varied``
style's light is a linear gradient of brightness; ``classic`` scenes are evenly lit, so their
target is a flat field); the estimator sees each first frame as the simulator's canvas does
(the objects and a margin of ``lcvg_env.tracking.START_MARGIN_PX`` unknown, filled from
around) and learns the slopes of the least-squares log-linear fit of the true light. The
checkpoint ``--init`` is written to ``--out`` with ``ModelConfig.shading`` on and the estimator
inside; everything else is unchanged. Prints one JSON object: the held-out slope errors per
style, and how much of the slopes' variance the estimate explains.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lcvg_env import compositing
from lcvg_env import tracking as track
from lcvg_env.checkpoint import find_checkpoint, load_checkpoint
from lcvg_env.configs import check_choices, check_ints, parse_config
from lcvg_env.models import LayeredGenerator
from lcvg_env.models.light import LightEstimator, plane_coordinates
from lcvg_env.world.scene import SceneConfig, Style, render, sample_scene

__all__ = ["LightConfig", "light_slopes", "main", "rendered_canvases", "train_estimator"]


@dataclass(frozen=True)
class LightConfig:
    """How the light estimator is trained and where it goes."""

    init: str = "lcvg_env/assets/sprites_small.safetensors"
    """The composite checkpoint the estimator is added to."""
    out: str = "runs/light/model.safetensors"
    """Where the checkpoint with the estimator is written (atomically)."""
    estimator_from: str | None = None
    """Take the estimator of this checkpoint (with ``shading`` on) instead of training one."""
    styles: tuple[Style, ...] = ("varied", "classic")
    """Scene styles rendered for training, in turn."""
    scenes: int = 40000
    """Training scenes (rendered on the CPU, about 15 ms each)."""
    test_scenes: int = 600
    """Held-out scenes the errors are reported on."""
    steps: int = 12000
    """Adam steps."""
    batch: int = 64
    """Scenes per step."""
    lr: float = 2e-3
    """Peak learning rate (one-cycle schedule; AdamW, weight decay 1e-4)."""
    seed: int = 0
    """Seed of the scenes (held-out ones use seed + 1) and of the training."""
    threads: int = 2
    """Torch CPU threads."""
    progress: bool = True
    """Show tqdm progress bars (rendering, then training) on stderr."""

    def __post_init__(self) -> None:
        """Validate the choices and counts, naming the offending value."""
        check_choices(self)
        check_ints(self, {"scenes": 1, "test_scenes": 1, "steps": 0, "batch": 1, "threads": 1})
        if not self.lr > 0:
            raise ValueError(f"LightConfig.lr must be > 0, got {self.lr!r}")


def light_slopes(light: np.ndarray) -> np.ndarray:
    """Slopes (b_x, b_y) of the least-squares fit of ``log light`` (H, W) by a + b_x x + b_y y."""
    h, w = light.shape
    coords = plane_coordinates(h, w)[0].reshape(2, -1).numpy().astype(np.float64)
    design = np.concatenate([np.ones((1, h * w)), coords]).T
    coef = np.linalg.lstsq(design, np.log(light.astype(np.float64)).ravel(), rcond=None)[0]
    return coef[1:].astype(np.float32)


def rendered_canvases(n: int, styles: Sequence[str], seed: int, size: int,
                      progress: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    """Render n scenes (styles in turn): canvases, known masks, true slopes (n, 2), styles.

    Canvases (n, 3, S, S) in [-1, 1] have their unknown pixels (the objects grown by
    ``START_MARGIN_PX``) filled from around, as ``LayeredGenerator.illumination`` fills them.
    ``progress`` shows a bar on stderr.
    """
    rng = np.random.default_rng(seed)
    frames, objects, slopes = [], [], []
    for i in tqdm(range(n), desc="render", disable=not progress):
        style = styles[i % len(styles)]
        config = SceneConfig(size=size, objects=(1, 3), style=style)  # type: ignore[arg-type]
        scene, poses = sample_scene(config, rng)
        drawn = render(scene, poses, rng=rng)
        light = scene.light if scene.light is not None else np.ones((size, size), np.float32)
        frames.append(drawn.frame)
        objects.append(drawn.visible.any(axis=0))
        slopes.append(light_slopes(light))
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    masks = torch.from_numpy(np.stack(objects))[:, None].float()
    _, known = track.start_canvas(x, masks)
    canvas = compositing.fill_holes(x, known)
    style_names = np.array([styles[i % len(styles)] for i in range(n)])
    return canvas, known, torch.from_numpy(np.stack(slopes)), style_names


def train_estimator(config: LightConfig, canvas: torch.Tensor, known: torch.Tensor,
                    slopes: torch.Tensor) -> LightEstimator:
    """Fit a new estimator to (canvas, known) -> slopes; mirror images double the data."""
    torch.manual_seed(config.seed)
    net = LightEstimator()
    optimiser = torch.optim.AdamW(net.parameters(), config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.lr,
                                                   total_steps=max(config.steps, 1))
    mirror = torch.tensor([-1.0, 1.0])  # a left-right flip negates the x slope
    for _ in tqdm(range(config.steps), desc="train", disable=not config.progress):
        pick = torch.randint(0, canvas.shape[0], (config.batch,))
        x, k, y = canvas[pick], known[pick], slopes[pick]
        if bool(torch.rand(()) < 0.5):
            x, k, y = x.flip(-1), k.flip(-1), y * mirror
        loss = ((net(x, k) - y) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    return net.eval()


def _errors(net: LightEstimator, canvas: torch.Tensor, known: torch.Tensor,
            slopes: torch.Tensor, styles: np.ndarray) -> dict[str, Any]:
    with torch.no_grad():
        predicted = net(canvas, known)
    error = ((predicted - slopes) ** 2).sum(dim=1)
    out: dict[str, Any] = {}
    for style in sorted(set(styles.tolist())):
        pick = torch.from_numpy(styles == style)
        spread = float((slopes[pick] ** 2).sum(dim=1).mean())
        mse = float(error[pick].mean())
        out[style] = {"slope_rmse": round(mse**0.5, 4), "true_slope_rms": round(spread**0.5, 4),
                      "explained": None if spread < 1e-12 else round(1.0 - mse / spread, 3)}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Train (or take) the estimator, write the checkpoint, print the report as JSON."""
    parser = argparse.ArgumentParser(prog="python -m training.light",
                                     description=__doc__.split("\n")[0])
    config, _ = parse_config(parser, LightConfig, argv)
    if config is None:  # --print-config
        return 0
    torch.set_num_threads(config.threads)
    file = find_checkpoint(config.init)
    kept = load_checkpoint(file, map_location="cpu")  # read once: weights and the config kept
    model = LayeredGenerator.from_loaded(kept, file, device="cpu")
    if model.config.prediction != "composite":
        parser.error(f"--init {config.init!r} is a prediction={model.config.prediction!r} "
                     "model; the light estimator serves composite models")
    size = model.config.resolution[0]
    started = time.perf_counter()
    test = rendered_canvases(config.test_scenes, config.styles, config.seed + 1, size,
                             config.progress)
    if config.estimator_from is not None:
        source = LayeredGenerator.from_checkpoint(config.estimator_from, device="cpu")
        if source.light is None:
            parser.error(f"--estimator-from {config.estimator_from!r} holds no light estimator")
        net = source.light
    else:
        canvas, known, slopes, _ = rendered_canvases(config.scenes, config.styles, config.seed,
                                                     size, config.progress)
        net = train_estimator(config, canvas, known, slopes)
    shaded = LayeredGenerator(model.config.replace(shading=True))
    state = model.state_dict()
    state.update({f"light.{name}": value for name, value in net.state_dict().items()})
    shaded.load_state_dict(state)
    extra = {key: value for key, value in dict(kept.config or {}).items() if key != "model"}
    extra["light"] = {"styles": list(config.styles), "scenes": config.scenes,
                      "steps": config.steps, "seed": config.seed,
                      "estimator_from": config.estimator_from}
    written = shaded.save(config.out, extra_config=extra)
    report = {"out": str(written), "init": config.init, "held_out": _errors(
        net, *test), "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
