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
    moves is the simulator's ``tracking`` (``lcvg_env.simulator``):

    - ``segment`` (the paper): the CURRENT GENERATED mask binarise(M(G_t)) is split into
      connected components, each component is assigned to the object whose true position at t
      is nearest to it and moved by that object's transform (by whole pixels with the
      sub-pixel remainder carried to the next step, ``lcvg_env.control.warp_binary``;
      ``subpixel=False`` gives the released code's bilinear warp-and-binarise);
    - ``carry``: the components of M(R_0) are assigned to objects once, and each object's
      mask is carried through the rollout (``lcvg_env.control.carry_masks``); M never sees a
      generated frame;
    - ``anchored``: carried while M's mask of the generated frame covers the object's carried
      mask (``lcvg_env.simulator.anchor``), else taken again from M's mask as in ``segment``.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from lcvg_env import compositing, control
from lcvg_env.models import LayeredGenerator
from lcvg_env.simulator import SIM_TRACKING, anchor
from training import metrics
from training.data.ground_truth import load_ground_truth, locate_objects
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


def list_clips(root: str | os.PathLike, split: str) -> list[Path]:
    """Clip folders of ``root/split`` that hold a ground-truth sidecar, in name order."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"no split folder {folder}")
    return sorted(p for p in folder.iterdir() if (p / "ground_truth.npz").is_file())


def load_clip(clip_dir: Path, length: int, size: tuple[int, int]) -> dict[str, Any] | None:
    """First ``length`` frames and ground truth of a clip at ``size`` (None when too short).

    Returns a dict: ``frames`` (T, 3, H, W) in [-1, 1], ``foreground`` (T, 1, H, W),
    ``objects`` (T, K, H, W) {0, 1}, ``centroids`` (T, K, 2) pixels (NaN when out of view),
    ``colors`` (K, 3) uint8.
    """
    files = sorted(p for p in clip_dir.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    gt = load_ground_truth(clip_dir)
    if gt is None or len(files) < length or gt.colors is None:
        return None
    imgs = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files[:length]])
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


def split_objects(masks: torch.Tensor, positions: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Split binary masks into the parts that belong to each object.

    masks (B, 1, H, W) {0, 1}; positions (B, K, 2) pixel (x, y) of each object (NaN: absent).
    Components of each mask (up to K + 4 largest) are assigned to the nearest present object.
    Returns the objects' masks (B, K, H, W) and the components assigned to none (B, 1, H, W).
    """
    b, _, h, w = masks.shape
    k = positions.shape[1]
    comps = control.object_masks(masks, k + 4)  # (B, C, H, W)
    area = comps.sum((2, 3))  # (B, C)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=masks.dtype, device=masks.device),
                            torch.arange(w, dtype=masks.dtype, device=masks.device),
                            indexing="ij")
    cx = (comps * xx).sum((2, 3)) / area.clamp_min(1)
    cy = (comps * yy).sum((2, 3)) / area.clamp_min(1)
    comp_xy = torch.stack([cx, cy], -1)  # (B, C, 2)
    dist = (comp_xy[:, :, None] - positions[:, None].to(masks.dtype)).norm(dim=-1)  # (B, C, K)
    dist = torch.nan_to_num(dist, nan=math.inf)
    nearest = dist.argmin(-1)  # (B, C)
    assigned = torch.isfinite(dist.amin(-1)) & (area > 0)  # (B, C)
    one_hot = F.one_hot(nearest, k).to(masks.dtype) * assigned[..., None]  # (B, C, K)
    per_object = torch.einsum("bchw,bck->bkhw", comps, one_hot).clamp(0, 1)
    kept = (comps * (~assigned)[..., None, None].to(masks.dtype)).amax(1, keepdim=True)
    return per_object, kept


def apply_object_controls(masks: torch.Tensor, theta: torch.Tensor, positions: torch.Tensor,
                          residual: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Move each object's part of binary masks by its own transform.

    masks (B, 1, H, W) {0, 1}; theta (B, K, 2, 3); positions (B, K, 2) pixel (x, y) of each
    object (NaN: absent, its components stay), as for ``split_objects``. ``residual``
    (B, K, 2): the sub-pixel motion each object is still owed
    (``lcvg_env.control.warp_binary``), or None to round every step's motion to whole pixels as
    a plain warp-and-binarise does. Returns the binarised union (B, 1, H, W) and the residual
    for the next step (None when none was given).
    """
    b, _, h, w = masks.shape
    k = theta.shape[1]
    per_object, kept = split_objects(masks, positions)
    theta = theta.to(masks.dtype)
    if residual is None:
        moved = control.warp_objects(per_object, theta)  # (B, 1, H, W)
    else:
        warped, residual = control.warp_binary(
            per_object.reshape(b * k, 1, h, w), theta.reshape(b * k, 2, 3),
            residual.reshape(b * k, 2))
        moved = warped.view(b, k, h, w).amax(1, keepdim=True)
        residual = residual.view(b, k, 2)
    return control.binarize(torch.maximum(moved, kept)), residual


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
    if tracking not in SIM_TRACKING:
        raise ValueError(f"tracking must be one of {SIM_TRACKING}, got {tracking!r}")
    if tracking != "segment" and not subpixel:
        raise ValueError("subpixel=False (whole-pixel rounding of every step) applies to "
                         f"tracking='segment' only, got tracking={tracking!r}: carried masks "
                         "move by their exact poses")


@torch.no_grad()
def rollout(model: LayeredGenerator, first: torch.Tensor, steps: int,
            protocol: str, theta: torch.Tensor | None = None,
            positions: torch.Tensor | None = None,
            target_masks: torch.Tensor | None = None, subpixel: bool = True,
            tracking: str = "segment") -> tuple[torch.Tensor, torch.Tensor]:
    """Generate ``steps`` frames from first frames (B, 3, H, W).

    ``tracking``: "segment", "carry" or "anchored" (the module docstring). ``subpixel``
    (segment only): carry the sub-pixel motion that binarising the warped masks drops from
    step to step (``lcvg_env.control.warp_binary``, as the simulator does); False rounds every
    step to whole pixels, the plain warp-and-binarise of the paper's code.

    ``protocol`` "translation"/"affine" need ``theta`` (B, T, K, 2, 3) and ``positions``
    (B, T, K, 2) (true object positions at t, for component assignment); "nonparametric"
    needs ``target_masks`` (B, T, 1, H, W), the control mask of each step. Returns generated
    frames (B, T, 3, H, W) and the control masks used (B, T, 1, H, W).
    """
    _check_tracking(tracking, subpixel)
    frames, used = [], []
    g = first
    carried = tracking != "segment" and protocol != "nonparametric"
    composite = model.config.prediction == "composite"
    residual = None
    if subpixel and theta is not None and not carried:
        residual = first.new_zeros(first.shape[0], theta.shape[2], 2)
    if carried:
        assert theta is not None and positions is not None
        b, k = theta.shape[0], theta.shape[2]
        h, w = first.shape[-2:]
        templates, kept = split_objects(model.binary_mask(first), positions[:, 0])
        poses = control.identity_matrix(b * k, device=first.device,
                                        dtype=first.dtype).view(b, k, 2, 3)
        moved = templates
        template_frames = first.unsqueeze(1).expand(-1, k, -1, -1, -1)  # (B, K, 3, H, W)
    if composite:  # the canvas: the first frame, where its objects are not
        if positions is None:
            raise ValueError("a composite model's rollout needs positions (B, T, K, 2) to split "
                             "the masks into objects")
        canvas = first
        known = 1.0 - split_objects(model.binary_mask(first), positions[:, 0])[0].amax(
            1, keepdim=True)
    for t in range(steps):
        step_theta = None if theta is None else theta[:, t]
        if carried:
            assert step_theta is not None
            objects = moved  # the carried masks of f_t
            moved, poses = control.carry_masks(templates.reshape(b * k, 1, h, w),
                                               poses.reshape(b * k, 2, 3),
                                               step_theta.reshape(b * k, 2, 3))
            moved, poses = moved.view(b, k, h, w), poses.view(b, k, 2, 3)
            m_c = torch.maximum(moved.amax(1, keepdim=True), kept)
        elif protocol == "nonparametric":
            assert target_masks is not None
            m_c = target_masks[:, t]
            if composite:  # moved by the transforms that fit the given masks
                assert positions is not None
                objects = split_objects(model.binary_mask(g), positions[:, t])[0]
                moved = split_objects(m_c, positions[:, t])[0]
                step_theta = _fit_pairs(objects, moved)
        else:
            assert step_theta is not None and positions is not None
            m = model.binary_mask(g)
            m_c, residual = apply_object_controls(m, step_theta, positions[:, t], residual)
            if composite:
                objects = split_objects(m, positions[:, t])[0]
                moved = control.warp_nearest(objects.reshape(-1, 1, *objects.shape[2:]),
                                             step_theta.reshape(-1, 2, 3)).view_as(objects)
        if composite and carried:  # as the simulator: each template's pixels, through its pose
            g, comp = compositing.predict(model.predict_next, template_frames, templates, poses,
                                          moved, m_c, canvas, known, model.config.band_px,
                                          objects.amax(1, keepdim=True))
        elif composite:
            assert step_theta is not None
            g, comp = compositing.predict(model.predict_next, g, objects, step_theta, moved,
                                          m_c, canvas, known, model.config.band_px)
        if composite:
            g = g.float().clamp(-1, 1)
            canvas, known = compositing.update_canvas(canvas, known, g, comp)
        else:
            g = model.predict_next(g, m_c).float().clamp(-1, 1)
        frames.append(g)
        used.append(m_c)
        if carried and tracking == "anchored" and t + 1 < steps:
            assert positions is not None
            m = model.binary_mask(g)
            found, kept = split_objects(m, positions[:, t + 1])
            moved, templates, poses, template_frames = anchor(
                moved, m, found, templates, poses, template_frames, g)
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


@torch.no_grad()
def evaluate(model: LayeredGenerator, data: str | os.PathLike, out_dir: str | os.PathLike | None,
             split: str = "test", num_clips: int = 16, horizon: int = 16,
             fit_iterations: int = 16, batch_clips: int = 8, gif_clips: int = 4,
             device: torch.device | str | None = None, subpixel: bool = True,
             tracking: str = "segment") -> dict[str, Any]:
    """Run the protocol of the module docstring; write outputs to ``out_dir`` (if given).

    ``subpixel`` and ``tracking`` are passed to ``rollout`` (``subpixel=False``: the paper's
    whole-pixel warps; ``tracking``: "segment", "carry" or "anchored").

    Returns the dict written to ``eval.json``.
    """
    if horizon < 1 or num_clips < 1:
        raise ValueError(f"horizon and num_clips must be >= 1, got {horizon}, {num_clips}")
    _check_tracking(tracking, subpixel)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    modes = module_modes(model)
    model.eval()
    size = tuple(model.config.resolution)
    clips = []
    for clip_dir in list_clips(data, split):
        c = load_clip(clip_dir, horizon + 1, size)  # type: ignore[arg-type]
        if c is not None:
            clips.append(c)
        if len(clips) >= num_clips:
            break
    if not clips:
        raise ValueError(
            f"no clip in {Path(data) / split} has >= {horizon + 1} frames, ground truth and key "
            "colours")
    width = size[1]
    ious: list[float] = []
    per: dict[str, dict[str, list[np.ndarray]]] = {
        p: {"err": [], "psnr": [], "ssim": [], "missed": []} for p in PROTOCOLS}
    contacts: list[np.ndarray] = []  # per clip (T, K): one entry per "err" entry of a protocol
    loc_err, loc_found = [], []
    fit_ious: dict[str, list[float]] = {"translation": [], "affine": []}
    gif_rows: list[np.ndarray] = []
    for start in range(0, len(clips), batch_clips):
        group = clips[start:start + batch_clips]
        batch = _stack_clips(group)
        real = batch["frames"].to(dev)  # (B, T+1, 3, H, W)
        b, t1 = real.shape[:2]
        real_masks = _masks(model, real.flatten(0, 1)).view(b, t1, 1, *size)
        fg = batch["foreground"].to(dev)
        ious += metrics.mask_iou(real_masks.flatten(0, 1), fg.flatten(0, 1)).tolist()
        objects = batch["objects"].to(dev)
        cents = batch["centroids"]  # (B, T+1, K, 2) pixels
        contact = contact_so_far(batch["objects"])  # (B, T+1, K)
        real_u8 = to_uint8(real.flatten(0, 1).cpu()).reshape(b, t1, *size, 3)
        for i, c in enumerate(group):
            k = c["centroids"].shape[1]
            contacts.append(contact[i, 1:, :k].numpy())
            located = torch.from_numpy(locate_objects(real_u8[i], c["colors"]))
            truth = cents[i, :, :k]
            visible = torch.isfinite(truth).all(-1)
            e = metrics.position_errors(located, truth, width)[visible]
            loc_err.append(e.numpy())
            loc_found.append(torch.isfinite(e).numpy())
        generated: dict[str, torch.Tensor] = {}
        for protocol in PROTOCOLS:
            if protocol == "nonparametric":
                gen, _ = rollout(model, real[:, 0], horizon, protocol,
                                 positions=cents[:, :-1].to(dev),
                                 target_masks=real_masks[:, 1:])
            else:
                theta, fiou = fit_object_controls(objects, protocol, fit_iterations)
                fit_ious[protocol].append(_nanmean(fiou.cpu().numpy()))
                gen, _ = rollout(model, real[:, 0], horizon, protocol, theta=theta,
                                 positions=cents[:, :-1].to(dev), subpixel=subpixel,
                                 tracking=tracking)
            generated[protocol] = gen
            target = real[:, 1:]
            per[protocol]["psnr"].append(
                metrics.psnr(gen.flatten(0, 1), target.flatten(0, 1)).view(b, horizon)
                .cpu().numpy())
            per[protocol]["ssim"].append(
                metrics.ssim(gen.flatten(0, 1), target.flatten(0, 1)).view(b, horizon)
                .cpu().numpy())
            gen_u8 = to_uint8(gen.flatten(0, 1).cpu()).reshape(b, horizon, *size, 3)
            for i, c in enumerate(group):
                k = c["centroids"].shape[1]
                located = torch.from_numpy(locate_objects(gen_u8[i], c["colors"]))  # (T, K, 2)
                truth = cents[i, 1:, :k]
                err = metrics.position_errors(located, truth, width)  # (T, K), NaN = missed
                visible = torch.isfinite(truth).all(-1)
                missed = visible & ~torch.isfinite(err)
                err = torch.where(visible, err, torch.full_like(err, math.nan))
                per[protocol]["err"].append(err.numpy())
                per[protocol]["missed"].append(
                    np.stack([missed.float().numpy(), visible.float().numpy()]))
        for i in range(min(b, max(0, gif_clips - len(gif_rows)))):
            row = [to_uint8(real[i, 1:].cpu())] + [
                to_uint8(generated[p][i].cpu()) for p in PROTOCOLS]
            gif_rows.append(np.concatenate(row, axis=2))  # (T, H, 4W, 3)

    result: dict[str, Any] = {
        "data": str(data), "split": split, "clips": len(clips), "horizon": horizon,
        "subpixel_carry": subpixel, "tracking": tracking,
        "resolution": list(size), "units": "position errors in units of image width",
        "mask_iou": _nanmean(np.asarray(ious)),
        "mask_iou_per_clip_frames": len(ious),
        "locator_on_real": {
            "rmse": metrics.rmse(torch.from_numpy(np.concatenate(loc_err))),
            "detection_rate": float(np.concatenate(loc_found).mean())
            if loc_found else math.nan,
        },
        "control_assignment": "per-object fits between true object masks, applied to the "
                              + _ASSIGNMENT[tracking],
        "protocols": {},
    }
    for protocol in PROTOCOLS:
        errs = per[protocol]["err"]
        steps = [_error_stats(np.concatenate([e[t].ravel() for e in errs]))
                 for t in range(horizon)]
        flat = np.concatenate([e.ravel() for e in errs])
        met = np.concatenate([c.ravel() for c in contacts])
        overall = _error_stats(flat)
        missed = np.concatenate([m.reshape(2, -1) for m in per[protocol]["missed"]], axis=1)
        psnr_steps = np.concatenate(per[protocol]["psnr"])  # (N, T)
        ssim_steps = np.concatenate(per[protocol]["ssim"])
        entry = {
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
        if protocol in fit_ious:
            entry["fit_iou"] = _nanmean(np.asarray(fit_ious[protocol]))
        result["protocols"][protocol] = entry
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        result["plot"] = plot_errors(result, out / "error_vs_step.png")
        if gif_rows:
            save_gif(gif_rows, out / "rollouts.gif")
            result["gif"] = str(out / "rollouts.gif")
        (out / "eval.json").write_text(json.dumps(_json_safe(result), indent=2))
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


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


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
