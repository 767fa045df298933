"""Evaluation against ground truth: mask quality, and the paper's control protocol.

For each held-out clip (frames R_0 .. R_T at the model's resolution, ground truth per object):

* **Mask IoU**: M's binarised mask of every real frame vs the true moving foreground.
* **Control rollouts** from the real first frame R_0, T steps, autoregressive (step t feeds the
  generated frame G_t back into M):

  - ``translation`` / ``affine`` (the paper's position and affine control): the transform of
    each object k from t to t + 1 is fitted (``lcvg_env.control.fit_control``) between the
    clip's TRUE per-object masks O_{k,t} and O_{k,t+1}. (M's union mask cannot tell objects
    apart when several move, so the per-object ground truth defines the control; with one
    object this equals a fit between the real foreground masks.) Which masks the control
    moves is the tracking mode (``lcvg_env.tracking``, as in the simulator):

    - ``segment`` (the paper): the CURRENT GENERATED mask binarise(M(G_t)) is split into
      connected components, each component is assigned to the object whose true position at t
      is nearest to it and moved by that object's transform (by whole pixels with the
      sub-pixel remainder carried to the next step, ``lcvg_env.control.warp_binary``;
      ``subpixel=False`` gives the released code's bilinear warp-and-binarise);
    - ``carry``: the components of M(R_0) are assigned to objects once, and each object's
      mask is carried through the rollout (``lcvg_env.control.carry_masks``); M never sees a
      generated frame;
    - ``anchored``: carried while M's mask of the generated frame covers the object's carried
      mask (``lcvg_env.tracking.anchor``), else taken again from M's mask as in ``segment``.

    The moved objects are united (unassigned components stay where they are); the union is
    binarised and conditions G.
  - ``nonparametric``: the control mask is M's binarised mask of the real next frame R_{t+1}.

* In each generated frame the objects are found by an independent detector, the key-colour
  locator ``training.data.ground_truth.locate_objects``, and compared with the true centroids:
  position RMSE in units of image width (our analogue of the paper's RMSED), per step and
  overall, its median and the rate of gross errors (> ``GROSS_ERROR`` widths), and the rate of
  missed detections, each also split into objects that have not yet met another object
  (``isolated``) and objects that have (``after_contact``: touching, overlapping, occluding;
  from the true masks). The locator's own accuracy on the real frames is reported beside it. PSNR
  and SSIM per step against the real frames.

Outputs in ``out_dir``: ``eval.json`` (every number), ``error_vs_step.png`` (matplotlib when
installed, else a plain PIL plot) and ``rollouts.gif`` (real | translation | affine |
non-parametric, side by side, one row per clip).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from lcvg_env import control
from lcvg_env import tracking as track
from lcvg_env.models import LayeredGenerator
from training import metrics
from training.data.ground_truth import GROUND_TRUTH_FILE, load_ground_truth, locate_objects
from training.jsonable import json_safe
from training.run_dir import to_uint8

PROTOCOLS = ("translation", "affine", "nonparametric")
_ASSIGNMENT = {
    "segment": "components of M's mask of the generated frame",
    "carry": "objects' masks in M's mask of the first frame, carried",
    "anchored": "objects' masks in M's mask of the first frame, carried while M's mask of the "
                "generated frame covers them",
}
"""How each ``tracking`` applies the per-object controls (``control_assignment`` in eval.json)."""
GROSS_ERROR = 0.1
"""Position errors above this many image widths (6.4 px at 64x64) count as gross in
``gross_rate``: the object is not where it should be, rather than slightly off."""
CONTACT_MARGIN = 2
"""Objects whose true masks come within this many pixels of each other count as in contact."""
_CLIP_NEEDS = (f"a {GROUND_TRUTH_FILE} with the arrays object_masks, foreground, centroids, "
               "boxes and colors (the objects' key colours)")
"""What ``load_clip`` reads from a clip folder besides its frames, for error messages."""
_SKIPPED_LISTED = 10
"""Skipped clips named one by one in an error message; the rest are counted."""


def _clip_folders(root: str | os.PathLike, split: str) -> list[Path]:
    """Every folder of ``root/split``, in name order."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"no split folder {folder}")
    return sorted(p for p in folder.iterdir() if p.is_dir())


def list_clips(root: str | os.PathLike, split: str) -> list[Path]:
    """Clip folders of ``root/split`` that hold a ground-truth sidecar, in name order."""
    return [p for p in _clip_folders(root, split) if (p / GROUND_TRUTH_FILE).is_file()]


def _read_clip(clip_dir: Path, length: int, size: tuple[int, int]) -> dict[str, Any] | str:
    """``load_clip``'s dict, or why the clip cannot be evaluated (a short phrase)."""
    files = sorted(p for p in clip_dir.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    gt = load_ground_truth(clip_dir)
    problems = []
    if gt is None:
        problems.append(f"no {GROUND_TRUTH_FILE}")
    elif gt.colors is None:
        problems.append(f"{GROUND_TRUTH_FILE} has no colors (key colours)")
    elif gt.num_frames < length <= len(files):
        problems.append(f"{GROUND_TRUTH_FILE} has {gt.num_frames} frames, needs {length}")
    if len(files) < length:
        problems.append(f"{len(files)} frames, needs {length}")
    if gt is None or problems:
        return "; ".join(problems)
    imgs = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files[:length]])
    if gt.size != imgs.shape[1:3]:
        return f"{GROUND_TRUTH_FILE} is {gt.size}, the frames {imgs.shape[1:3]} (H, W)"
    frames = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    objects = torch.from_numpy(gt.object_masks[:length].astype(np.float32))
    centroids = torch.from_numpy(gt.centroids[:length].astype(np.float32))
    h, w = frames.shape[-2:]
    if (h, w) != tuple(size):
        frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False,
                               antialias=True)
        objects = F.interpolate(objects, size=size, mode="nearest")
        scale = torch.tensor([size[1] / w, size[0] / h])
        centroids = (centroids + 0.5) * scale - 0.5
    return {"frames": frames.clamp(-1, 1), "objects": objects,
            "foreground": objects.amax(1, keepdim=True), "centroids": centroids,
            "colors": np.asarray(gt.colors, dtype=np.uint8), "clip_dir": str(clip_dir)}


def load_clip(clip_dir: Path, length: int, size: tuple[int, int]) -> dict[str, Any] | None:
    """First ``length`` frames and ground truth of a clip at ``size`` (None when unusable).

    A usable clip has ``length`` frames (.png/.jpg) and a ground-truth sidecar with key colours.
    Returns a dict: ``frames`` (T, 3, H, W) in [-1, 1], ``foreground`` (T, 1, H, W),
    ``objects`` (T, K, H, W) {0, 1}, ``centroids`` (T, K, 2) pixels (NaN when out of view),
    ``colors`` (K, 3) uint8.
    """
    clip = _read_clip(clip_dir, length, size)
    return None if isinstance(clip, str) else clip


def _load_clips(data: str | os.PathLike, split: str, num_clips: int, length: int,
                size: tuple[int, int], at_most: bool = False) -> list[dict[str, Any]]:
    """Load the first ``num_clips`` usable clips of ``data/split`` (``load_clip``), by name.

    With ``at_most``, fewer (but at least one) usable clips are returned with a
    ``UserWarning`` that names each skipped clip and why.

    Raises:
        FileNotFoundError: there is no split folder.
        ValueError: no usable clip, or (without ``at_most``) fewer than ``num_clips``, naming
            the folder, how many were found and each skipped clip with why.
    """
    folders = _clip_folders(data, split)
    clips: list[dict[str, Any]] = []
    skipped: list[str] = []
    for clip_dir in folders:
        clip = _read_clip(clip_dir, length, size)
        if isinstance(clip, str):
            skipped.append(f"{clip_dir.name} ({clip})")
        else:
            clips.append(clip)
        if len(clips) >= num_clips:
            return clips
    listed = "; ".join(skipped[:_SKIPPED_LISTED])
    if len(skipped) > _SKIPPED_LISTED:
        listed += f"; and {len(skipped) - _SKIPPED_LISTED} more"
    why = f"skipped {len(skipped)}: {listed}" if skipped else "none skipped"
    where = Path(data) / split
    if not clips:
        raise ValueError(f"no usable clip in {where} ({len(folders)} clip folders, {why}): "
                         f"each clip folder needs >= {length} frames (.png/.jpg) and {_CLIP_NEEDS}")
    message = (f"num_clips={num_clips} asked, but {where} has only {len(clips)} usable "
               f"clip(s) of {len(folders)} clip folders ({why}); a usable clip has >= "
               f"{length} frames and {_CLIP_NEEDS}")
    if at_most:
        warnings.warn(message + f"; scoring the {len(clips)}", stacklevel=3)
        return clips
    raise ValueError(message)


def _stack_clips(clips: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad objects to the largest K (empty masks, NaN centroids) and stack: (B, T, ...)."""
    k = max(c["objects"].shape[1] for c in clips)
    objects, cents = [], []
    for c in clips:
        o, p = c["objects"], c["centroids"]
        pad = k - o.shape[1]
        if pad:
            o = torch.cat([o, o.new_zeros(o.shape[0], pad, *o.shape[2:])], 1)
            p = torch.cat([p, p.new_full((p.shape[0], pad, 2), math.nan)], 1)
        objects.append(o)
        cents.append(p)
    return {"frames": torch.stack([c["frames"] for c in clips]),
            "foreground": torch.stack([c["foreground"] for c in clips]),
            "objects": torch.stack(objects), "centroids": torch.stack(cents)}


def contact_so_far(objects: torch.Tensor, margin: int = CONTACT_MARGIN) -> torch.Tensor:
    """Which objects have met another one yet: (B, T, K, H, W) true masks -> (B, T, K) bool.

    True at (b, t, k) when object k's mask came within ``margin`` pixels of another object's
    mask at some frame <= t: where objects touch, overlap or occlude each other. The evaluation
    splits its position errors by this flag.
    """
    b, t, k, h, w = objects.shape
    present = objects > 0
    grown = F.max_pool2d(present.flatten(0, 2)[:, None].float(), 2 * margin + 1, 1, margin)
    covered_by_others = (present.sum(2, keepdim=True) - present.int()) > 0
    touching = ((grown.view(b, t, k, h, w) > 0) & covered_by_others).flatten(3).any(-1)
    return touching.int().cummax(dim=1).values.bool()


def _error_stats(errors: np.ndarray) -> dict[str, float | int]:
    """RMSE, median, gross-error rate and count of the finite entries of ``errors``."""
    err = torch.from_numpy(errors)
    median, gross_rate = metrics.median_and_gross_rate(err, GROSS_ERROR)
    return {"rmse": metrics.rmse(err), "median": median, "gross_rate": gross_rate,
            "count": int(np.isfinite(errors).sum())}


@torch.no_grad()
def _masks(model: LayeredGenerator, frames: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Binarised M masks of (N, 3, H, W) frames -> (N, 1, H, W), in chunks."""
    out = [model.binary_mask(frames[i:i + chunk])
           for i in range(0, frames.shape[0], chunk)]
    return torch.cat(out)


@torch.no_grad()
def fit_object_controls(objects: torch.Tensor, mode: str, iterations: int = 16
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-object transforms between consecutive true masks.

    objects (B, T+1, K, H, W) -> theta (B, T, K, 2, 3) ``input_from_output`` (identity where an
    object is missing in either frame) and the fit IoU (B, T, K) (NaN where not fitted).
    """
    b, t1, k, h, w = objects.shape
    src = objects[:, :-1].reshape(-1, 1, h, w)
    tgt = objects[:, 1:].reshape(-1, 1, h, w)
    fit = control.fit_control(src, tgt, mode=mode, iterations=iterations)
    theta = fit.theta.reshape(b, t1 - 1, k, 2, 3)
    iou = torch.where(fit.valid, fit.iou.float(), torch.full_like(fit.iou.float(), math.nan))
    return theta, iou.reshape(b, t1 - 1, k)


def _move_split(objects: torch.Tensor, rest: torch.Tensor, theta: torch.Tensor,
                residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Move objects (B, K, H, W) by theta (B, K, 2, 3) and unite them with ``rest``.

    As :func:`apply_object_controls`, from masks already split by
    ``lcvg_env.tracking.split_by_positions``.
    """
    theta = theta.to(objects.dtype)
    if residual is None:
        moved = control.warp_objects(objects, theta)  # (B, 1, H, W)
    else:
        moved, residual = track.move_segments(objects, theta, residual)
    return control.binarize(track.control_mask(moved, rest)), residual


def apply_object_controls(masks: torch.Tensor, theta: torch.Tensor, positions: torch.Tensor,
                          residual: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Move each object's part of binary masks by its own transform.

    masks (B, 1, H, W) {0, 1}; theta (B, K, 2, 3); positions (B, K, 2) pixel (x, y) of each
    object (NaN: absent, its components stay), as for
    ``lcvg_env.tracking.split_by_positions``. ``residual`` (B, K, 2): the sub-pixel motion each
    object is still owed (``lcvg_env.control.warp_binary``), or None to round every step's
    motion to whole pixels as a plain warp-and-binarise does. Returns the binarised union
    (B, 1, H, W) and the residual for the next step (None when none was given).
    """
    objects, rest = track.split_by_positions(masks, positions)
    return _move_split(objects, rest, theta, residual)


def module_modes(model: torch.nn.Module) -> list[tuple[torch.nn.Module, bool]]:
    """Return each submodule with its ``training`` flag, for :func:`restore_modes`.

    A blanket ``model.train(was_training)`` after evaluating would wake a mask network frozen
    for stage II.
    """
    return [(module, module.training) for module in model.modules()]


def restore_modes(modes: Sequence[tuple[torch.nn.Module, bool]]) -> None:
    """Give each submodule back the ``training`` flag :func:`module_modes` recorded."""
    for module, training in modes:
        module.training = training


def _check_tracking(tracking: str, subpixel: bool) -> None:
    track.check_tracking(tracking)
    if tracking != "segment" and not subpixel:
        raise ValueError("subpixel=False (whole-pixel rounding of every step) applies to "
                         f"tracking='segment' only, got tracking={tracking!r}: carried masks "
                         "move by their exact poses")


def _check_rollout_inputs(model: LayeredGenerator, protocol: str, theta: torch.Tensor | None,
                          positions: torch.Tensor | None, target_masks: torch.Tensor | None
                          ) -> None:
    """Raise ValueError naming what ``rollout``'s ``protocol`` needs and was not given."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "nonparametric" and target_masks is None:
        raise ValueError("protocol 'nonparametric' needs target_masks (B, T, 1, H, W)")
    if protocol != "nonparametric" and (theta is None or positions is None):
        given = {name: None if x is None else tuple(x.shape)
                 for name, x in (("theta", theta), ("positions", positions))}
        raise ValueError(f"protocol {protocol!r} needs theta (B, T, K, 2, 3) and positions "
                         f"(B, T, K, 2), got shapes {given}")
    if model.config.prediction == "composite" and positions is None:
        raise ValueError("a composite model's rollout needs positions (B, T, K, 2) to split "
                         "the masks into objects")


def _segment_controls(model: LayeredGenerator, frames: torch.Tensor, theta: torch.Tensor,
                      positions: torch.Tensor, residual: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Make one step's control mask with ``tracking="segment"``.

    M's mask of ``frames`` is split by the true positions (B, K, 2) and each part moved by its
    theta (B, K, 2, 3). Returns the control mask (B, 1, H, W), the residual of the next
    step and the objects (B, K, H, W).
    """
    objects, rest = track.split_by_positions(model.binary_mask(frames), positions)
    m_c, residual = _move_split(objects, rest, theta, residual)
    return m_c, residual, objects


def _given_mask_objects(model: LayeredGenerator, frames: torch.Tensor, m_c: torch.Tensor,
                        positions: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Find a composite model's objects before and after a given control mask.

    M's mask of ``frames`` and ``m_c`` (B, 1, H, W) are split by the true positions (B, K, 2),
    and each object's transform between the two is fitted. Returns objects (B, K, H, W),
    moved (B, K, H, W) and theta (B, K, 2, 3).
    """
    objects = track.split_by_positions(model.binary_mask(frames), positions)[0]
    moved = track.split_by_positions(m_c, positions)[0]
    return objects, moved, _fit_pairs(objects, moved)


@torch.no_grad()
def rollout(model: LayeredGenerator, first: torch.Tensor, steps: int,
            protocol: str, theta: torch.Tensor | None = None,
            positions: torch.Tensor | None = None,
            target_masks: torch.Tensor | None = None, subpixel: bool = True,
            tracking: str = "segment") -> tuple[torch.Tensor, torch.Tensor]:
    """Generate ``steps`` frames from first frames (B, 3, H, W).

    ``tracking``: "segment", "carry" or "anchored" (``lcvg_env.tracking``; carried masks start
    from M's mask of ``first``). ``subpixel`` (segment only): carry the sub-pixel motion that
    binarising the warped masks drops from step to step (``lcvg_env.control.warp_binary``, as
    the simulator does); False rounds every step to whole pixels, the plain warp-and-binarise of
    the paper's code. A composite model renders each step with the simulator's function
    (``lcvg_env.tracking.predict_composite``); under "segment" its objects' pixels land where a
    nearest-pixel warp puts them, not on the sub-pixel-owing masks the simulator's do.

    ``protocol`` "translation"/"affine" need ``theta`` (B, T, K, 2, 3) and ``positions``
    (B, T, K, 2) (true object positions at t, for component assignment); "nonparametric"
    needs ``target_masks`` (B, T, 1, H, W), the control mask of each step (and ``positions``
    for a composite model). Returns generated frames (B, T, 3, H, W) and the control masks used
    (B, T, 1, H, W).
    """
    _check_tracking(tracking, subpixel)
    _check_rollout_inputs(model, protocol, theta, positions, target_masks)
    carried = tracking != "segment" and protocol != "nonparametric"
    composite = model.config.prediction == "composite"
    residual = None
    if subpixel and theta is not None and not carried:
        residual = first.new_zeros(first.shape[0], theta.shape[2], 2)
    if carried or composite:
        assert positions is not None
        objects, kept = track.split_by_positions(model.binary_mask(first), positions[:, 0])
        canvas, known = track.start_canvas(first, objects)
        light = model.illumination(canvas, known) if model.config.shading else None
        templates, moved = objects, objects
        poses, layers = track.start_carrying(objects, first)
    g, frames, used = first, [], []
    for t in range(steps):
        step_theta = None if theta is None else theta[:, t]
        pixels = None  # where a composite step takes the objects' pixels from
        if carried:
            assert step_theta is not None  # checked above: as are the asserts below
            objects = moved  # the carried masks of f_t
            moved, poses = track.carry(templates, poses, step_theta)
            m_c = track.control_mask(moved, kept)
            pixels = (poses, layers)
        elif protocol == "nonparametric":
            assert target_masks is not None
            m_c = target_masks[:, t]
            if composite:  # moved by the transforms that fit the given masks
                assert positions is not None
                objects, moved, step_theta = _given_mask_objects(model, g, m_c, positions[:, t])
        else:
            assert step_theta is not None and positions is not None
            m_c, residual, objects = _segment_controls(model, g, step_theta, positions[:, t],
                                                       residual)
            if composite:  # the pixels land where a nearest-pixel warp of the objects puts them
                moved = control.warp_nearest(objects.reshape(-1, 1, *objects.shape[2:]),
                                             step_theta.reshape(-1, 2, 3)).view_as(objects)
        if composite:
            assert step_theta is not None
            g = track.predict_composite(
                model.predict_next, g, objects, step_theta, moved, m_c, canvas, known,
                model.config.band_px, pixels, light)
        else:
            g = model.predict_next(g, m_c).float().clamp(-1, 1)
        frames.append(g)
        used.append(m_c)
        if carried and tracking == "anchored" and t + 1 < steps:
            assert positions is not None
            m = model.binary_mask(g)
            found, kept = track.split_by_positions(m, positions[:, t + 1])
            moved, templates, poses, layers = track.anchor(
                moved, m, found, templates, poses, layers, g)
    return torch.stack(frames, 1), torch.stack(used, 1)


def _fit_pairs(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Affine transforms (B, K, 2, 3) moving each object mask (B, K, H, W) onto its target."""
    b, k, h, w = source.shape
    fit = control.fit_control(source.reshape(b * k, 1, h, w), target.reshape(b * k, 1, h, w),
                              mode="affine")
    return fit.theta.to(source.dtype).view(b, k, 2, 3)


def _rate(events: np.ndarray, chances: np.ndarray) -> float:
    """Events per chance (0/1 arrays of one shape); 0 when there was no chance."""
    return float(events.sum() / max(chances.sum(), 1))


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


@dataclass
class _Tally:
    """What an evaluation gathers batch by batch, per clip (see :func:`evaluate`)."""

    ious: list[float] = field(default_factory=list)
    """Mask IoU of every real frame."""
    per: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=lambda: {
        p: {"err": [], "psnr": [], "ssim": [], "missed": []} for p in PROTOCOLS})
    """Per protocol, per clip: position errors (T, K), PSNR and SSIM per step, and missed /
    visible flags (2, T, K)."""
    contacts: list[np.ndarray] = field(default_factory=list)
    """Per clip (T, K): whether each object has met another; one per "err" entry."""
    loc_err: list[np.ndarray] = field(default_factory=list)
    """Per clip: the locator's position errors on the real frames where objects are visible."""
    loc_found: list[np.ndarray] = field(default_factory=list)
    """Per clip: whether the locator found each visible object on the real frames."""
    fit_ious: dict[str, list[float]] = field(
        default_factory=lambda: {"translation": [], "affine": []})
    """Per parametric protocol, per batch: mean IoU of the fitted controls."""
    gif_rows: list[np.ndarray] = field(default_factory=list)
    """(T, H, 4W, 3) real | translation | affine | nonparametric, one per clip shown."""


def _score_real(model: LayeredGenerator, group: Sequence[dict[str, Any]],
                batch: dict[str, Any], real: torch.Tensor, tally: _Tally) -> torch.Tensor:
    """Score M's masks and the key-colour locator on the real frames (B, T+1, 3, H, W).

    Returns M's binarised masks of the real frames (B, T+1, 1, H, W).
    """
    b, t1, _, h, w = real.shape
    real_masks = _masks(model, real.flatten(0, 1)).view(b, t1, 1, h, w)
    fg = batch["foreground"].to(real.device)
    tally.ious += metrics.mask_iou(real_masks.flatten(0, 1), fg.flatten(0, 1)).tolist()
    contact = contact_so_far(batch["objects"])  # (B, T+1, K)
    real_u8 = to_uint8(real.flatten(0, 1).cpu()).reshape(b, t1, h, w, 3)
    for i, c in enumerate(group):
        k = c["centroids"].shape[1]
        tally.contacts.append(contact[i, 1:, :k].numpy())
        located = torch.from_numpy(locate_objects(real_u8[i], c["colors"]))
        truth = batch["centroids"][i, :, :k]
        visible = torch.isfinite(truth).all(-1)
        e = metrics.position_errors(located, truth, w)[visible]
        tally.loc_err.append(e.numpy())
        tally.loc_found.append(torch.isfinite(e).numpy())
    return real_masks


def _score_rollout(gen: torch.Tensor, real: torch.Tensor, group: Sequence[dict[str, Any]],
                   centroids: torch.Tensor, scores: dict[str, list[np.ndarray]]) -> None:
    """Score generated frames (B, T, 3, H, W) against the real clip (B, T+1, 3, H, W).

    ``centroids`` (B, T+1, K, 2): the true pixel positions; ``scores``: one protocol's lists
    of :class:`_Tally` ``per``.
    """
    b, horizon, _, h, w = gen.shape
    target = real[:, 1:]
    scores["psnr"].append(metrics.psnr(gen.flatten(0, 1), target.flatten(0, 1))
                          .view(b, horizon).cpu().numpy())
    scores["ssim"].append(metrics.ssim(gen.flatten(0, 1), target.flatten(0, 1))
                          .view(b, horizon).cpu().numpy())
    gen_u8 = to_uint8(gen.flatten(0, 1).cpu()).reshape(b, horizon, h, w, 3)
    for i, c in enumerate(group):
        k = c["centroids"].shape[1]
        located = torch.from_numpy(locate_objects(gen_u8[i], c["colors"]))  # (T, K, 2)
        truth = centroids[i, 1:, :k]
        err = metrics.position_errors(located, truth, w)  # (T, K), NaN = missed
        visible = torch.isfinite(truth).all(-1)
        missed = visible & ~torch.isfinite(err)
        scores["err"].append(torch.where(visible, err, torch.full_like(err, math.nan)).numpy())
        scores["missed"].append(np.stack([missed.float().numpy(), visible.float().numpy()]))


def _score_batch(model: LayeredGenerator, group: Sequence[dict[str, Any]], tally: _Tally,
                 device: torch.device, horizon: int, fit_iterations: int, subpixel: bool,
                 tracking: str, gif_clips: int) -> None:
    """Roll out every protocol on a batch of clips and add their scores to ``tally``."""
    batch = _stack_clips(group)
    real = batch["frames"].to(device)  # (B, T+1, 3, H, W)
    real_masks = _score_real(model, group, batch, real, tally)
    cents = batch["centroids"]  # (B, T+1, K, 2) pixels
    positions = cents[:, :-1].to(device)
    generated: dict[str, torch.Tensor] = {}
    for protocol in PROTOCOLS:
        if protocol == "nonparametric":
            gen, _ = rollout(model, real[:, 0], horizon, protocol, positions=positions,
                             target_masks=real_masks[:, 1:])
        else:
            theta, fiou = fit_object_controls(batch["objects"].to(device), protocol,
                                              fit_iterations)
            tally.fit_ious[protocol].append(_nanmean(fiou.cpu().numpy()))
            gen, _ = rollout(model, real[:, 0], horizon, protocol, theta=theta,
                             positions=positions, subpixel=subpixel, tracking=tracking)
        generated[protocol] = gen
        _score_rollout(gen, real, group, cents, tally.per[protocol])
    for i in range(min(len(group), max(0, gif_clips - len(tally.gif_rows)))):
        row = [to_uint8(real[i, 1:].cpu())] + [
            to_uint8(generated[p][i].cpu()) for p in PROTOCOLS]
        tally.gif_rows.append(np.concatenate(row, axis=2))  # (T, H, 4W, 3)


def _protocol_entry(scores: dict[str, list[np.ndarray]], contacts: Sequence[np.ndarray],
                    horizon: int) -> dict[str, Any]:
    """One protocol's numbers in eval.json, from its :class:`_Tally` ``per`` lists."""
    errs = scores["err"]
    steps = [_error_stats(np.concatenate([e[t].ravel() for e in errs]))
             for t in range(horizon)]
    flat = np.concatenate([e.ravel() for e in errs])
    met = np.concatenate([c.ravel() for c in contacts])
    overall = _error_stats(flat)
    missed = np.concatenate([m.reshape(2, -1) for m in scores["missed"]], axis=1)
    psnr_steps = np.concatenate(scores["psnr"])  # (N, T)
    ssim_steps = np.concatenate(scores["ssim"])
    return {
        "rmse": overall["rmse"],
        "rmse_per_step": [s["rmse"] for s in steps],
        "median": overall["median"],
        "median_per_step": [s["median"] for s in steps],
        "gross_rate": overall["gross_rate"],
        "count": overall["count"],
        "isolated": {**_error_stats(np.where(met, np.nan, flat)),
                     "missed_rate": _rate(missed[0][~met], missed[1][~met])},
        "after_contact": {**_error_stats(np.where(met, flat, np.nan)),
                          "missed_rate": _rate(missed[0][met], missed[1][met])},
        "missed_rate": _rate(missed[0], missed[1]),
        "psnr": _nanmean(np.where(np.isinf(psnr_steps), 100.0, psnr_steps)),
        "psnr_per_step": [_nanmean(np.where(np.isinf(s), 100.0, s)) for s in psnr_steps.T],
        "ssim": _nanmean(ssim_steps),
        "ssim_per_step": [_nanmean(s) for s in ssim_steps.T],
    }


def _write_outputs(result: dict[str, Any], out: Path, gif_rows: Sequence[np.ndarray]) -> None:
    """Write eval.json, error_vs_step.png and (with rows) rollouts.gif to ``out``.

    The plot's note and the GIF's path are added to ``result`` first.
    """
    out.mkdir(parents=True, exist_ok=True)
    result["plot"] = plot_errors(result, out / "error_vs_step.png")
    if gif_rows:
        save_gif(gif_rows, out / "rollouts.gif")
        result["gif"] = str(out / "rollouts.gif")
    (out / "eval.json").write_text(json.dumps(json_safe(result), indent=2))


@torch.no_grad()
def evaluate(model: LayeredGenerator, data: str | os.PathLike, out_dir: str | os.PathLike | None,
             split: str = "test", num_clips: int = 16, horizon: int = 16,
             fit_iterations: int = 16, batch_clips: int = 8, gif_clips: int = 4,
             device: torch.device | str | None = None, subpixel: bool = True,
             tracking: str = "segment", at_most: bool = False) -> dict[str, Any]:
    """Run the protocol of the module docstring; write outputs to ``out_dir`` (if given).

    Scores the first ``num_clips`` usable clips of ``data/split`` (``load_clip``); with
    ``at_most``, fewer with a warning naming the skipped clips (the trainer's final
    evaluation, which must not lose a finished run to a short split).
    ``subpixel`` and ``tracking`` are passed to ``rollout`` (``subpixel=False``: the paper's
    whole-pixel warps; ``tracking``: "segment", "carry" or "anchored").

    Returns the dict written to ``eval.json``.

    Raises:
        FileNotFoundError: no folder ``data/split``.
        ValueError: bad arguments, no usable clip, or (without ``at_most``) fewer than
            ``num_clips`` usable clips (the message names each skipped clip and why).
    """
    if horizon < 1 or num_clips < 1:
        raise ValueError(f"horizon and num_clips must be >= 1, got {horizon}, {num_clips}")
    _check_tracking(tracking, subpixel)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    size: tuple[int, int] = (int(model.config.resolution[0]), int(model.config.resolution[1]))
    clips = _load_clips(data, split, num_clips, horizon + 1, size, at_most)
    modes = module_modes(model)
    model.eval()
    tally = _Tally()
    for start in range(0, len(clips), batch_clips):
        _score_batch(model, clips[start:start + batch_clips], tally, dev, horizon,
                     fit_iterations, subpixel, tracking, gif_clips)
    result: dict[str, Any] = {
        "data": str(data), "split": split, "clips": len(clips), "horizon": horizon,
        "subpixel_carry": subpixel, "tracking": tracking,
        "resolution": list(size), "units": "position errors in units of image width",
        "mask_iou": _nanmean(np.asarray(tally.ious)),
        "mask_iou_per_clip_frames": len(tally.ious),
        "locator_on_real": {
            "rmse": metrics.rmse(torch.from_numpy(np.concatenate(tally.loc_err))),
            "detection_rate": float(np.concatenate(tally.loc_found).mean())
            if tally.loc_found else math.nan,
        },
        "control_assignment": "per-object fits between true object masks, applied to the "
                              + _ASSIGNMENT[tracking],
        "protocols": {},
    }
    for protocol in PROTOCOLS:
        entry = _protocol_entry(tally.per[protocol], tally.contacts, horizon)
        if protocol in tally.fit_ious:
            entry["fit_iou"] = _nanmean(np.asarray(tally.fit_ious[protocol]))
        result["protocols"][protocol] = entry
    if out_dir is not None:
        _write_outputs(result, Path(out_dir), tally.gif_rows)
    restore_modes(modes)
    return result


def summarize(result: dict[str, Any]) -> dict[str, float]:
    """Flatten the headline numbers of an ``evaluate`` result into one dict.

    Keys: ``mask_iou``, ``locator_rmse`` and, per protocol P, ``P_rmse``, ``P_median``,
    ``P_gross_rate``, ``P_isolated_rmse``, ``P_after_contact_rmse``, ``P_missed_rate``,
    ``P_psnr`` and ``P_ssim``.
    """
    flat = {"mask_iou": result["mask_iou"], "locator_rmse": result["locator_on_real"]["rmse"]}
    for name, entry in result["protocols"].items():
        for key in ("rmse", "median", "gross_rate", "missed_rate", "psnr", "ssim"):
            flat[f"{name}_{key}"] = entry[key]
        for group in ("isolated", "after_contact"):
            flat[f"{name}_{group}_rmse"] = entry[group]["rmse"]
    return flat


def plot_errors(result: dict[str, Any], path: Path) -> str:
    """Position RMSE vs rollout step per protocol as a PNG; returns a note of how it was drawn."""
    series = {p: result["protocols"][p]["rmse_per_step"] for p in PROTOCOLS}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _pil_plot(series, path)
        return f"{path} (matplotlib not installed: drawn with PIL)"
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    for name, ys in series.items():
        ax.plot(range(1, len(ys) + 1), [y if y is not None else math.nan for y in ys],
                marker="o", ms=3, label=name)
    ax.set_xlabel("rollout step")
    ax.set_ylabel("position RMSE (image widths)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def _pil_plot(series: dict[str, list[float]], path: Path, size: tuple[int, int] = (480, 300)
              ) -> None:
    w, h = size
    left, right, top, bottom = 50, 110, 15, 35
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    values = [v for ys in series.values() for v in ys if v is not None and math.isfinite(v)]
    ymax = max(values) * 1.1 if values else 1.0
    ymax = ymax if ymax > 0 else 1.0
    n = max(len(ys) for ys in series.values())
    draw.rectangle([left, top, w - right, h - bottom], outline="black")
    for frac in (0.0, 0.5, 1.0):
        y = h - bottom - frac * (h - top - bottom)
        draw.text((4, y - 6), f"{frac * ymax:.3f}", fill="black")
    draw.text((left, h - bottom + 8), "step 1", fill="black")
    draw.text((w - right - 40, h - bottom + 8), f"step {n}", fill="black")
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c"]
    for (name, ys), colour in zip(series.items(), colours):
        pts = []
        for i, v in enumerate(ys):
            if v is None or not math.isfinite(v):
                continue
            x = left + (i / max(n - 1, 1)) * (w - left - right)
            y = h - bottom - (v / ymax) * (h - top - bottom)
            pts.append((x, y))
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        idx = list(series).index(name)
        draw.text((w - right + 6, top + 14 * idx), name, fill=colour)
    img.save(path)


def save_gif(rows: Sequence[np.ndarray], path: Path, fps: int = 4) -> None:
    """Stack rows (T, H, W', 3) vertically and write an animated GIF."""
    video = np.concatenate(list(rows), axis=1)  # (T, sum H, W', 3)
    frames = [Image.fromarray(f).resize((f.shape[1] * 2, f.shape[0] * 2), Image.NEAREST)
              for f in video]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps),
                   loop=0)
