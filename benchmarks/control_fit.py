"""Pseudo-control fitting: our batched fitter against the paper's procedure as released.

Both run in this one process on the same mask pairs: random shapes (ellipses, polygons, blobs,
rectangles), each rendered exactly (point-sampled at pixel centres) before and after a random
affine motion or a pure translation, at 64x64 and 256x256.

- ours: ``lcvg_env.control.fit_control(..., mode="affine")`` on all pairs of a setting at once
  (per-pair cost = total / n, after one warm-up call);
- official: the released recipe re-implemented from its description: one pair at a time, a
  2x3 affine matrix initialised at the identity, 1000 steps of SGD at learning rate 0.1 on the
  mean squared error between the ``grid_sample``-warped source and the target; the sampling
  grid is built as in the release (``linspace(-1, 1)`` pixel coordinates, ``grid_sample`` with
  its default ``align_corners=False``).

Both IoUs compare the binarised (> 0.5) warped source with the target. Prints one JSON object.

    python -m benchmarks.control_fit --pairs 32 --official-pairs 2 --device auto

The flags are the fields of :class:`ControlFitConfig` (``--print-config`` prints the resolved
config and exits).
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.config_checks import check_device, check_int_tuple, parse_benchmark, resolved_device
from benchmarks.timing import synchronize
from lcvg_env.configs import check_ints
from lcvg_env.control import fit_control

SHAPES = ("ellipse", "polygon", "blob", "rectangle")
KINDS = ("affine", "translation")


@dataclass(frozen=True)
class ControlFitConfig:
    """What the fitters are compared on (``python -m benchmarks.control_fit``)."""

    pairs: int = 32
    """Pairs per setting (size x kind) for our fitter (timed batched)."""
    official_pairs: int = 2
    """Pairs per setting for the released fitter (the first ones; 0: ours only)."""
    official_iterations: int = 1000
    """SGD steps of the released fitter (the release uses 1000)."""
    sizes: tuple[int, ...] = (64, 256)
    """Frame sizes (square)."""
    device: str = "auto"
    """Torch device: auto (CUDA when available), cpu, cuda, cuda:1..."""
    threads: int = 0
    """Torch CPU threads (0: torch's default)."""
    seed: int = 0
    """Seed of the random shapes."""

    def __post_init__(self) -> None:
        """Validate the counts, sizes and device, naming the offending value."""
        check_ints(self, {"pairs": 1, "official_pairs": 0, "official_iterations": 0,
                          "threads": 0, "seed": 0})
        check_int_tuple(self, "sizes", 1)
        check_device(self)


# ------------------------------------------------------------------------------------------
# exact rendering of random shapes
# ------------------------------------------------------------------------------------------


def _inside(shape: str, spec: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Indicator of a shape in its own frame (pixels, centred at its origin)."""
    if shape == "ellipse":
        return (u / spec["a"]) ** 2 + (v / spec["b"]) ** 2 <= 1.0
    if shape == "rectangle":
        return (np.abs(u) <= spec["a"]) & (np.abs(v) <= spec["b"])
    angle = np.arctan2(v, u)
    radius = np.hypot(u, v)
    if shape == "blob":  # smooth radial function
        r = spec["r0"] * (1.0 + sum(
            amp * np.cos(k * angle + ph) for k, amp, ph in spec["harmonics"]))
        return radius <= r
    # star-shaped polygon: vertices at sorted angles; inside if radius <= the edge's radius
    vert_ang, vert_rad = spec["angles"], spec["radii"]
    ang = np.mod(angle, 2 * math.pi)
    idx = np.searchsorted(vert_ang, ang) % len(vert_ang)
    prev = (idx - 1) % len(vert_ang)
    vx, vy = vert_rad * np.cos(vert_ang), vert_rad * np.sin(vert_ang)
    p0 = np.stack([vx[prev], vy[prev]])
    p1 = np.stack([vx[idx], vy[idx]])
    # the ray from the origin at `angle` meets segment p0-p1 at distance t
    d = np.stack([np.cos(angle), np.sin(angle)])
    e = p1 - p0
    denom = d[0] * e[1] - d[1] * e[0]
    t = (p0[0] * e[1] - p0[1] * e[0]) / np.where(np.abs(denom) < 1e-12, 1e-12, denom)
    return radius <= t


def _random_spec(shape: str, rng: np.random.Generator, scale: float) -> dict:
    if shape in ("ellipse", "rectangle"):
        return {"a": scale * rng.uniform(0.6, 1.1), "b": scale * rng.uniform(0.45, 0.9)}
    if shape == "blob":
        return {"r0": scale * rng.uniform(0.7, 1.0),
                "harmonics": [(k, rng.uniform(0.05, 0.2), rng.uniform(0, 2 * math.pi))
                              for k in (2, 3, 5)]}
    n = int(rng.integers(4, 9))
    jitter = np.arange(n) + rng.uniform(-0.3, 0.3, n)
    angles = np.sort(np.mod(rng.uniform(0, 2 * math.pi) + jitter * 2 * math.pi / n, 2 * math.pi))
    return {"angles": angles, "radii": scale * rng.uniform(0.6, 1.2, n)}


def _render(shape: str, spec: dict, size: int, inv_lin: np.ndarray, centre: np.ndarray
            ) -> np.ndarray:
    """Mask whose pixel p is inside when ``inv_lin @ (p - centre)`` is inside the shape."""
    j, i = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    du, dv = j - centre[0], i - centre[1]
    u = inv_lin[0, 0] * du + inv_lin[0, 1] * dv
    v = inv_lin[1, 0] * du + inv_lin[1, 1] * dv
    return _inside(shape, spec, u, v).astype(np.float32)


def _rot(a: float) -> np.ndarray:
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def make_pair(size: int, kind: str, shape: str, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One exact (source, target) mask pair, both (size, size), the shape fully in view, and the
    true ``input_from_output`` matrix (2, 3) in normalised coordinates."""
    for _ in range(1000):
        scale = size * rng.uniform(0.18, 0.26)
        spec = _random_spec(shape, rng, scale)
        base = _rot(rng.uniform(-math.pi, math.pi))  # pose of the shape in the source
        centre = rng.uniform(0.35, 0.65, 2) * size
        if kind == "translation":
            motion = np.eye(2)
            shift = rng.uniform(-0.2, 0.2, 2) * size
        else:
            shear = np.array([[1.0, rng.uniform(-0.3, 0.3)], [0.0, 1.0]])
            scales = np.diag(np.exp(rng.uniform(-0.25, 0.25, 2)))
            motion = _rot(rng.uniform(-math.pi / 4, math.pi / 4)) @ shear @ scales
            shift = rng.uniform(-0.15, 0.15, 2) * size
        src = _render(shape, spec, size, base.T, centre)
        tgt = _render(shape, spec, size, np.linalg.inv(motion @ base), centre + shift)
        border = np.concatenate([m[[0, -1]].ravel() for m in (src, tgt)]
                                + [m[:, [0, -1]].ravel() for m in (src, tgt)])
        if border.any() or min(src.sum(), tgt.sum()) < 0.01 * size * size:
            continue
        # forward motion in pixels p = centre + shift + motion (q - centre), then to normalised
        # coordinates x = 2 p / size - 1
        fwd_lin = motion
        fwd_shift = (centre + shift - motion @ centre) * 2.0 / size + fwd_lin @ np.ones(2) - 1.0
        inv_lin = np.linalg.inv(fwd_lin)
        theta = np.concatenate([inv_lin, -(inv_lin @ fwd_shift)[:, None]], axis=1)
        return src, tgt, theta
    raise RuntimeError("could not place a shape in the frame")


def make_pairs(n: int, size: int, kind: str, seed: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, 1, size, size) sources and targets, cycling through the shapes, and the true
    (n, 2, 3) ``input_from_output`` matrices."""
    rng = np.random.default_rng(seed)
    pairs = [make_pair(size, kind, SHAPES[i % len(SHAPES)], rng) for i in range(n)]
    src = torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None]
    tgt = torch.from_numpy(np.stack([p[1] for p in pairs]))[:, None]
    theta = torch.from_numpy(np.stack([p[2] for p in pairs])).float()
    return src, tgt, theta


# ------------------------------------------------------------------------------------------
# the released procedure (one pair at a time)
# ------------------------------------------------------------------------------------------


def _official_warp(mask: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """(H, W) mask warped by a 2x3 matrix acting on a linspace(-1, 1) pixel grid."""
    h, w = mask.shape
    ys = torch.linspace(-1.0, 1.0, h, device=mask.device)
    xs = torch.linspace(-1.0, 1.0, w, device=mask.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx.flatten(), gy.flatten(), torch.ones_like(gx).flatten()], dim=1)
    grid = (points @ matrix.T).view(1, h, w, 2)
    return F.grid_sample(mask[None, None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[0, 0]


def official_fit(src: torch.Tensor, tgt: torch.Tensor, iterations: int = 1000, lr: float = 0.1
                 ) -> torch.Tensor:
    """Fit one pair ((H, W) each) as released; returns the warped source (H, W)."""
    matrix = torch.eye(2, 3, device=src.device).requires_grad_(True)
    opt = torch.optim.SGD([matrix], lr=lr)
    moved = src
    for _ in range(iterations):
        moved = _official_warp(src, matrix)
        loss = torch.mean(torch.square(moved - tgt))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return moved.detach()


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0.5, b > 0.5
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else 0.0


def _warp(masks: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(masks.shape), align_corners=False)
    return F.grid_sample(masks, grid, align_corners=False)


def _batch_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a > 0.5, b > 0.5
    return (a & b).sum((1, 2, 3)) / (a | b).sum((1, 2, 3)).clamp_min(1)


# ------------------------------------------------------------------------------------------


def run(config: ControlFitConfig, device: torch.device | None = None) -> dict:
    """Compare both fitters on every setting of ``config``; returns the JSON report.

    ``device``: where both run (default: ``config.device`` resolved).
    """
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    device = resolved_device(config) if device is None else device
    pairs, official_pairs, seed = config.pairs, config.official_pairs, config.seed
    official_iterations = config.official_iterations
    settings: dict[str, dict] = {}
    for size in config.sizes:
        for kind in KINDS:
            src, tgt, theta = make_pairs(pairs, size, kind,
                                         seed + size + (0 if kind == "affine" else 1))
            src, tgt, theta = src.to(device), tgt.to(device), theta.to(device)
            fit_control(src[:2], tgt[:2], mode="affine")  # warm-up
            synchronize(device)
            start = time.perf_counter()
            fit = fit_control(src, tgt, mode="affine")
            synchronize(device)
            ours_total = time.perf_counter() - start
            entry = {
                "pairs": pairs,
                "ours_s_per_pair": ours_total / pairs,
                "ours_iou": fit.iou.mean().item(),
                "ours_iou_min": fit.iou.min().item(),
                "ours_valid": int(fit.valid.sum().item()),
                # the ceiling that rasterisation leaves: IoU under the true transform
                "exact_transform_iou": _batch_iou(_warp(src, theta), tgt).mean().item(),
            }
            if kind == "translation":
                tfit = fit_control(src, tgt, mode="translation")
                entry["ours_translation_mode_iou"] = tfit.iou.mean().item()
            m = min(official_pairs, pairs)
            if m > 0:
                start = time.perf_counter()
                ious = []
                for i in range(m):
                    moved = official_fit(src[i, 0], tgt[i, 0], official_iterations)
                    ious.append(_iou(moved, tgt[i, 0]))
                synchronize(device)
                off_total = time.perf_counter() - start
                entry.update({
                    "official_pairs": m,
                    "official_s_per_pair": off_total / m,
                    "official_iou": float(np.mean(ious)),
                    "ours_iou_same_pairs": fit.iou[:m].mean().item(),
                    "speedup": off_total / m / (ours_total / pairs),
                })
            settings[f"{size}x{size}/{kind}"] = entry
            print(f"{size}x{size}/{kind}: {json.dumps(entry)}", file=sys.stderr, flush=True)
    ours_t = float(np.mean([e["ours_s_per_pair"] for e in settings.values()]))
    result = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "ours_s_per_pair": ours_t,
        "ours_iou": float(np.mean([e["ours_iou"] for e in settings.values()])),
        "exact_transform_iou": float(np.mean([e["exact_transform_iou"]
                                              for e in settings.values()])),
    }
    timed = [e for e in settings.values() if "official_s_per_pair" in e]
    if timed:
        off_t = float(np.mean([e["official_s_per_pair"] for e in timed]))
        result.update({
            "official_s_per_pair": off_t,
            "official_iou": float(np.mean([e["official_iou"] for e in timed])),
            "ours_iou_same_pairs": float(np.mean([e["ours_iou_same_pairs"] for e in timed])),
            "speedup": off_t / ours_t,
            "official_iterations": official_iterations,
        })
    result["settings"] = settings
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print its JSON."""
    config, parser = parse_benchmark(ControlFitConfig, "python -m benchmarks.control_fit", __doc__,
                                     argv)
    if config is None:  # --print-config
        return 0
    print(json.dumps(run(config, resolved_device(config, parser)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
