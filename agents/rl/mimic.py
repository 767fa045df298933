"""Mimic: replay a driving clip's object motion, from another first frame, in the simulator.

``mimic(config)`` (``lcvg-rl mimic``):

1. reads the driving clip (frames ``00000.png`` ... in numeric order) and its objects' masks:
   the ``object_masks`` of the clip's ``ground_truth.npz`` (the sidecar of
   ``lcvg-data make sprites``, uint8 (T, K, H, W)), else the K largest components of M's mask
   of each frame, followed from frame to frame by nearest centroid;
2. fits each object's motion between consecutive frames (``lcvg_env.control.fit_control``,
   ``affine`` or ``translation``) and turns it into the environment's actions
   (``matrix_to_params`` about the object's centroid, divided by the action ranges, clipped
   to [-1, 1]); objects are ordered largest first in the first frame, the environment's order;
3. applies the actions in the learned environment started from another first frame: an image
   (``reset(options={"frame": ...})``) or ``twin:SEED``, the first frame of the twin's scene
   drawn with SEED (``lcvg_env.world.pairing.paired_reset``: same scene, objects matched);
4. for ``twin:SEED`` replays the same actions in the twin and measures the mimicked rollout
   against it: each object is found in the generated frame by its true colour
   (``lcvg_env.world.locate.find_objects``), its position error (pixels between the found and
   true visible centroids) and shape error (1 - IoU of the found and true visible masks);
5. writes ``mimic.gif`` (driving | mimicked [| twin], side by side) and ``mimic.json``, and
   returns the JSON-ready summary (``twin`` is None for an image: there is no true scene).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from PIL import Image

from agents.rl.config import MimicConfig
from agents.rl.envs import learned_kwargs, twin_id
from lcvg_env import control as ctl
from lcvg_env.env import load_model
from lcvg_env.render import save_video, upscale
from lcvg_env.world.locate import find_objects, mask_centroids
from lcvg_env.world.pairing import paired_reset

GROUND_TRUTH = "ground_truth.npz"
"""The clip's ground-truth sidecar (training.data.ground_truth's format, read with numpy)."""
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
"""Frame files of a clip folder."""
_FAR = 10.0  # matching cost of an empty component: beyond any distance in [-1, 1]^2
TWIN_PREFIX = "twin:"
"""``--frame twin:SEED``: start from the twin's scene drawn with SEED."""
GIF_SCALE = 3
"""Upscaling of each panel of mimic.gif."""


def read_clip(folder: str | Path) -> np.ndarray:
    """uint8 (T, H, W, 3): the frames of a clip folder, in numeric order of their names.

    Raises:
        FileNotFoundError: no such folder, or no frames in it (naming it).
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"driving clip {root} is not a folder")
    files = [p for p in root.iterdir() if p.suffix.lower() in FRAME_SUFFIXES]
    if len(files) < 2:
        raise FileNotFoundError(f"driving clip {root} holds {len(files)} frame(s); needs >= 2")
    files.sort(key=lambda p: (int(p.stem) if p.stem.isdigit() else float("inf"), p.name))
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in files])


def read_image(path: str | Path) -> np.ndarray:
    """uint8 (H, W, 3) of an image file (FileNotFoundError naming a missing one)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"first frame {path} not found (an image, or twin:SEED)")
    return np.asarray(Image.open(path).convert("RGB"))


def clip_objects(folder: str | Path, frames: np.ndarray, model: Any, count: int) -> torch.Tensor:
    """Return the masks of the driving clip's objects, float (T, K, H, W) in {0, 1}.

    Largest in the first frame first. From ``ground_truth.npz`` when the clip has one (its
    objects visible in the first frame,
    ``count`` of them if > 0), else from M (``count`` or 1 objects; see ``follow_components``).
    """
    sidecar = Path(folder) / GROUND_TRUTH
    if sidecar.is_file():
        with np.load(sidecar, allow_pickle=False) as data:
            masks = torch.from_numpy(data["object_masks"].astype(np.float32))  # (T, K, H, W)
        if masks.shape[0] != frames.shape[0] or masks.ndim != 4:
            raise ValueError(
                f"{sidecar}: object_masks {tuple(masks.shape)} do not match "
                f"{frames.shape[0]} frames"
            )
        area = masks[0].sum(dim=(1, 2))
        order = [int(k) for k in torch.argsort(area, descending=True) if area[k] > 0]
        return masks[:, order[: count or len(order)]]
    with torch.inference_mode():
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().to(_device(model)) / 127.5 - 1
        segmentation = model.binary_mask(x).cpu()
    return follow_components(ctl.object_masks(segmentation, count or 1))


def follow_components(components: torch.Tensor) -> torch.Tensor:
    """Order each frame's components (T, K, H, W) to follow frame 0's, by nearest centroid.

    Greedy matching, closest pair first; empty components and objects not seen yet match
    last.
    """
    out = [components[0]]
    seen = ctl.mask_areas(components[:1])[0] > 0
    nowhere = torch.full((components.shape[1], 2), float("nan"))  # an unseen object costs _FAR
    previous = torch.where(seen[:, None], ctl.mask_centroids(components[:1])[0], nowhere)
    for t in range(1, components.shape[0]):
        current = ctl.mask_centroids(components[t : t + 1])[0]
        present = ctl.mask_areas(components[t : t + 1])[0] > 0
        cost = torch.nan_to_num(torch.cdist(previous, current), nan=_FAR) + (~present)[None] * _FAR
        order = torch.zeros(cost.shape[0], dtype=torch.long)
        for _ in range(cost.shape[0]):
            flat = int(torch.argmin(cost))
            i, j = divmod(flat, cost.shape[1])
            order[i] = j
            cost[i, :] = float("inf")
            cost[:, j] = float("inf")
        frame = components[t][order]
        out.append(frame)
        moved = ctl.mask_areas(frame[None])[0] > 0
        previous = torch.where(moved[:, None], ctl.mask_centroids(frame[None])[0], previous)
    return torch.stack(out)


def fit_actions(
    objects: torch.Tensor, control: str, ranges: Any, size: tuple[int, int], iterations: int
) -> tuple[np.ndarray, dict[str, float | None]]:
    """Fit actions (T-1, K*P) moving each object as between consecutive masks (T, K, H, W).

    Returns the actions and fit statistics (mean fit IoU, fraction of clipped entries).
    """
    t1, k = objects.shape[:2]
    h, w = size
    if tuple(objects.shape[-2:]) != (h, w):
        objects = torch.nn.functional.interpolate(objects, size=(h, w), mode="nearest")
    source = objects[:-1].reshape(-1, 1, h, w)
    target = objects[1:].reshape(-1, 1, h, w)
    mode = "affine" if control == "affine" else "translation"
    fit = ctl.fit_control(source, target, mode=mode, iterations=iterations)
    centres = ctl.mask_centroids(source)[:, 0]  # (B, 2) normalised
    theta = torch.where(fit.valid[:, None, None], fit.theta, ctl.identity_matrix(len(fit.theta)))
    params = ctl.matrix_to_params(theta, center=centres, size=(h, w))  # (B, 6)
    params = torch.where(fit.valid[:, None], params, torch.zeros_like(params))
    if control == "position":
        params = params[:, :2]
    scale = torch.tensor(ranges.scale(control), dtype=params.dtype)
    raw = params.reshape(t1 - 1, k, -1) / scale
    actions = raw.clamp(-1.0, 1.0).reshape(t1 - 1, -1)
    stats = {
        "fit_iou": round(float(fit.iou[fit.valid].mean()), 4) if fit.valid.any() else None,
        "clipped_fraction": round(float((raw.abs() > 1.0).float().mean()), 4),
    }
    return actions.numpy().astype(np.float32), stats


def twin_errors(generated: np.ndarray, twin: Any) -> tuple[np.ndarray, np.ndarray]:
    """Position error (K,) pixels and shape error (K,) of the objects in ``generated``.

    Each object is found by its true colour; NaN where it is not visible in the twin, and a
    shape error of 1 (position NaN) where it is visible but not found.
    """
    true = twin.true_masks()
    found = find_objects(generated[None], twin.frame[None], true[None], twin.other_masks()[None],
                         twin.background()[None])[0]
    found_c, found_area = mask_centroids(found)
    true_c, true_area = mask_centroids(true)
    position = np.linalg.norm(found_c - true_c, axis=-1)
    union = (found | true).sum(axis=(1, 2))
    iou = np.where(union > 0, (found & true).sum(axis=(1, 2)) / np.maximum(union, 1), np.nan)
    shape = np.where(true_area > 0, 1.0 - iou, np.nan)
    position = np.where((true_area > 0) & (found_area > 0), position, np.nan)
    return position, shape


def mimic(config: MimicConfig) -> dict[str, Any]:
    """Run the mimic of ``config`` (see the module docstring); returns the summary."""
    if not config.driving:
        raise ValueError("mimic needs --driving CLIP_DIR")
    kwargs = learned_kwargs(config.env, config.device, config.tracking, config.checkpoint)
    model = load_model(kwargs["checkpoint"], config.device)
    frames = read_clip(config.driving)
    objects = clip_objects(config.driving, frames, model, config.objects)
    if objects.shape[1] == 0:
        raise ValueError(f"no object is visible in the first frame of {config.driving}")
    steps = frames.shape[0] - 1 if not config.steps else min(config.steps, frames.shape[0] - 1)
    objects, frames = objects[: steps + 1], frames[: steps + 1]
    k = int(objects.shape[1])
    kwargs.update(control=config.control, num_objects=k, max_episode_steps=steps + 1)
    env = gym.make(config.env, **kwargs)
    core = env.unwrapped.core  # type: ignore[attr-defined]
    actions, stats = fit_actions(objects, config.control, core.action_ranges, core.resolution,
                                 config.fit_iterations)
    twin: Any = None
    if config.frame.startswith(TWIN_PREFIX):
        seed = int(config.frame[len(TWIN_PREFIX):] or 0)
        twin = gym.make(twin_id(config.env), control=config.control, num_objects=k,
                        size=core.resolution[0]).unwrapped
        (obs, _), _ = paired_reset(env, twin, seed=seed)
    else:
        obs, _ = env.reset(seed=0, options={"frame": read_image(config.frame)})
    mimicked, real = [_frame_of(obs)], [] if twin is None else [twin.frame]
    position, shape = [], []
    for action in actions:
        obs, *_ = env.step(action)
        mimicked.append(_frame_of(obs))
        if twin is not None:
            twin.step(action)
            real.append(twin.frame)
            p, s = twin_errors(mimicked[-1], twin)
            position.append(p)
            shape.append(s)
    env.close()
    out = Path(config.out)
    gif = write_side_by_side(out / "mimic.gif", [frames, np.stack(mimicked)]
                             + ([np.stack(real)] if real else []), core.resolution, config.fps)
    summary: dict[str, Any] = {
        "driving": str(config.driving), "frame": config.frame, "env": config.env,
        "control": config.control, "objects": k, "steps": int(steps),
        "masks_from": "ground_truth" if (Path(config.driving) / GROUND_TRUTH).is_file()
        else "M", **stats, "gif": str(gif), "twin": None,
    }
    if twin is not None:
        summary["twin"] = _error_summary(np.array(position), np.array(shape), twin_id(config.env))
    (out / "mimic.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _error_summary(position: np.ndarray, shape: np.ndarray, env_id: str) -> dict[str, Any]:
    """Mean position (px) and shape (1 - IoU) errors, overall and per step, vs the twin."""

    def mean(values: np.ndarray) -> float | None:
        finite = values[np.isfinite(values)]
        return round(float(finite.mean()), 4) if finite.size else None

    return {
        "env": env_id,
        "position_error_px": mean(position),
        "shape_error": mean(shape),
        "found_rate": round(float(np.isfinite(position).mean()), 4) if position.size else None,
        "position_error_px_per_step": [mean(row) for row in position],
        "shape_error_per_step": [mean(row) for row in shape],
    }


def write_side_by_side(path: Path, videos: list[np.ndarray], size: tuple[int, int],
                       fps: float) -> Path:
    """Write the videos (each (T, h, w, 3)) side by side at ``size`` as a GIF; returns path."""
    h, w = size
    panels = []
    for video in videos:
        if video.shape[1:3] != (h, w):
            video = np.stack([np.asarray(Image.fromarray(f).resize((w, h))) for f in video])
        panels.append(video)
    length = max(len(video) for video in panels)
    rows = []
    for t in range(length):
        row = [video[min(t, len(video) - 1)] for video in panels]
        gap = np.full((h, 2, 3), 255, np.uint8)
        joined = np.concatenate([part for frame in row for part in (frame, gap)][:-1], axis=1)
        rows.append(upscale(joined, GIF_SCALE))
    return Path(save_video(path, rows, fps=fps))


def _frame_of(observation: Any) -> np.ndarray:
    return np.asarray(observation["frame"] if isinstance(observation, dict) else observation)


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device
