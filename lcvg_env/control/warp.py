"""Warping, binarising and editing masks (and any maps) with affine controls.

Matrices are ``input_from_output`` (see ``lcvg_env.control``): ``warp_masks(m_t, theta)``
approximates ``m_{t+1}`` when ``theta`` is the control from frame t to t + 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lcvg_env.control.checks import (
    _describe,
    _require_finite,
    _require_float,
    _require_masks,
    _require_points,
    _require_tensor,
    _require_theta,
)
from lcvg_env.control.components import mask_centroids
from lcvg_env.control.geometry import _invert, _pixel_centres, _pixel_scale, compose_affine


def warp_masks(
    masks: Tensor, theta: Tensor, *, mode: str = "bilinear", padding_mode: str = "zeros",
    size: tuple[int, int] | None = None,
) -> Tensor:
    """Warp masks (or any maps) with ``input_from_output`` matrices; differentiable.

    Args:
        masks: (B, C, H, W); bool/integer masks are converted to float32.
        theta: (B, 2, 3) or (1, 2, 3) ``input_from_output`` (the ``lcvg_env.control``
            convention); cast to the masks' dtype, must be on their device.
        mode: ``grid_sample`` interpolation, ``"bilinear"``, ``"bicubic"`` (sharper; may
            overshoot the input's range) or ``"nearest"``.
        padding_mode: what lies outside the input frame (``"zeros"``: background).
        size: the output's (h, w), None: the input's. An input larger than it by the same
            margin on every side holds the output frame and what lies around it (templates
            that keep parts of objects beyond the frame); ``theta`` stays in the output
            frame's coordinates.

    Returns:
        (B, C, h, w) warped masks: ``out(p) = masks(theta @ [p; 1])``. Soft; call
        :func:`binarize` for {0, 1} masks.
    """
    masks = _require_masks("masks", masks)
    theta = _require_theta("theta", theta, masks.shape[0])
    if theta.device != masks.device:
        raise ValueError(f"theta is on {theta.device} but masks are on {masks.device}")
    if mode not in ("bilinear", "bicubic", "nearest"):
        raise ValueError(f"mode must be 'bilinear', 'bicubic' or 'nearest', got {mode!r}")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(f"padding_mode must be zeros/border/reflection, got {padding_mode!r}")
    return _warp(masks, theta.to(masks.dtype).expand(masks.shape[0], 2, 3), mode, padding_mode,
                 _check_size(size, masks))


def subpixel_spread(theta: Tensor, h: int, w: int) -> Tensor:
    """How far from an input pixel centre each output pixel of a warp samples.

    Interpolating between two pixels halfway blurs an edge the most and on a centre not at
    all; ``4 f (1 - f)`` of the fractional part f of the source coordinate measures it.

    Args:
        theta: (B, 2, 3) ``input_from_output`` matrices.
        h: output (and input) height.
        w: output (and input) width.

    Returns:
        (B, 1, h, w) in [0, 1]: the larger of the x and y measures (0: on a pixel centre, 1:
        halfway between two).

    Raises:
        ValueError: a bad ``theta`` or a size that is not a positive int, quoting it.
    """
    theta = _require_theta("theta", theta)
    for name, n in (("h", h), ("w", w)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{name} must be an int >= 1, got {n!r}")
    xs = _pixel_centres(w, theta).view(1, 1, w)
    ys = _pixel_centres(h, theta).view(1, h, 1)
    t = theta.unsqueeze(-1).unsqueeze(-1)  # (B, 2, 3, 1, 1)
    offsets = []
    for row, n in ((0, w), (1, h)):  # source pixel coordinate: (normalised + 1) * n / 2 - 1/2
        scale = t[:, row] * (n / 2.0)
        source = scale[:, 0] * xs + (scale[:, 1] * ys + (scale[:, 2] + (n - 1) / 2.0))
        offsets.append((source - source.round()).abs())  # in [0, 1/2], rising with 4 f (1 - f)
    off = torch.maximum(*offsets)
    return (4.0 * off * (1.0 - off)).unsqueeze(1)


def _check_size(size: tuple[int, int] | None, source: Tensor) -> tuple[int, int]:
    """Return the output size of a warp of ``source`` (B, C, H, W): ``size``, or its own.

    Raises:
        ValueError: ``size`` not two positive ints, or larger than the source or short of it by
            an odd number of pixels (no equal margin on both sides), quoting both.
    """
    height, width = source.shape[-2:]
    if size is None:
        return height, width
    if (not isinstance(size, tuple | list) or len(size) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size)):
        raise ValueError(f"size must be two ints > 0 (h, w), got {size!r}")
    h, w = size
    if h > height or w > width or (height - h) % 2 or (width - w) % 2:
        raise ValueError(f"an input of {height}x{width} must be the output of {h}x{w} with an "
                         f"equal margin on every side (size {size!r})")
    return h, w


def _sampling_grid(theta: Tensor, h: int, w: int, source: tuple[int, int] | None = None
                   ) -> Tensor:
    """(B, h, w, 2) input coordinates ``theta @ [x; y; 1]`` of the output pixel centres.

    Equal to ``F.affine_grid(theta, (B, C, h, w), align_corners=False)``, but cheaper. With
    ``source`` (H, W), the input is the output frame with a margin around it: the coordinates
    are scaled to it (a point at normalised x in the frame lies at ``x * w / W`` in it).
    """
    xs = _pixel_centres(w, theta).view(1, 1, w)
    ys = _pixel_centres(h, theta).view(1, h, 1)
    t = theta.unsqueeze(-1).unsqueeze(-1)  # (B, 2, 3, 1, 1)
    gx = t[:, 0, 0] * xs + (t[:, 0, 1] * ys + t[:, 0, 2])
    gy = t[:, 1, 0] * xs + (t[:, 1, 1] * ys + t[:, 1, 2])
    if source is not None and tuple(source) != (h, w):
        gx, gy = gx * (w / source[1]), gy * (h / source[0])
    return torch.stack([gx, gy], dim=-1)


def _warp(masks: Tensor, theta: Tensor, mode: str = "bilinear", padding: str = "zeros",
          size: tuple[int, int] | None = None) -> Tensor:
    """``masks`` sampled through ``theta`` into an output of ``size`` (:func:`warp_masks`)."""
    h, w = size if size is not None else masks.shape[-2:]
    grid = _sampling_grid(theta, h, w, (masks.shape[-2], masks.shape[-1]))
    return F.grid_sample(masks, grid, mode=mode, padding_mode=padding, align_corners=False)


def binarize(masks: Tensor, threshold: float = 0.5) -> Tensor:
    """Hard masks: 1.0 where ``masks > threshold``, else 0.0.

    Args:
        masks: any shape; float, bool or integer.
        threshold: finite float.

    Returns:
        Same shape, values in {0, 1}; the input's float dtype (float32 for bool/integer input).
    """
    masks = _require_tensor("masks", masks)
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    masks = _require_float("masks", masks)
    return (masks > threshold).to(masks.dtype)


def nonparametric_edit(masks: Tensor, user_masks: Tensor, threshold: float = 0.5) -> Tensor:
    """Validate and binarise a user-drawn mask that replaces the current masks.

    Args:
        masks: (B, 1, H, W) current masks; give the shape, device and dtype of the result.
        user_masks: the edit, (H, W), (1, H, W), (1, 1, H, W) or (B, 1, H, W) (broadcast over
            the batch); bool, integer (non-zero is foreground, e.g. uint8 0/255) or float in
            ``[0, 1]`` (binarised at ``threshold``).
        threshold: binarisation threshold for float edits.

    Returns:
        (B, 1, H, W) {0, 1} masks on the device and in the float dtype of ``masks``.
    """
    ref = _require_masks("masks", masks, channels=1)
    edit = _require_tensor("user_masks", user_masks)
    b, _, h, w = ref.shape
    allowed = {(h, w), (1, h, w), (1, 1, h, w), (b, 1, h, w)}
    if tuple(edit.shape) not in allowed:
        raise ValueError(
            f"user_masks must have shape (H, W), (1, H, W), (1, 1, H, W) or (B, 1, H, W) = "
            f"({b}, 1, {h}, {w}), got {_describe(edit)}"
        )
    if edit.is_floating_point():
        _require_finite("user_masks", edit)
        if edit.numel() and bool(((edit < 0) | (edit > 1)).any()):
            raise ValueError(
                f"float user_masks must lie in [0, 1], got range [{float(edit.min())}, "
                f"{float(edit.max())}]"
            )
        hard = edit > threshold
    else:
        hard = edit != 0
    hard = hard.reshape(-1, 1, h, w).to(device=ref.device, dtype=ref.dtype)
    return hard.expand(b, 1, h, w).contiguous()


_TIE_NUDGE_PX = 1e-3


def warp_binary(
    masks: Tensor,
    theta: Tensor,
    residual: Tensor | None = None,
    *,
    threshold: float = 0.5,
    limit_px: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Move binary masks by whole pixels, carrying the sub-pixel remainder to the next step.

    The usual warp-and-binarise (bilinear ``warp_masks``, then ``binarize``) loses the fraction
    of a pixel in every move: moved by 1.3 px a mask comes out moved by 1 px, moved by 0.4 px
    not at all, and a diagonal move of under half a pixel erodes its corners (a 10x10 square
    moved by (0.3, -0.45) px sixteen times keeps 6 of its 100 pixels). Here the masks are
    sampled at the nearest pixel, which keeps their shape, and the rounding error is kept as
    in error diffusion: ``residual``, the error of the previous step, is added to the motion
    as a translation, and the new residual is the distance from the centroid the transform
    gives (the affine image of the old centroid, plus the incoming residual) to the centroid
    of the result. A residual larger than ``limit_px`` pixels on either axis is not rounding
    (the mask left the frame or was cut) and is dropped.

    Args:
        masks: (B, 1, H, W) masks, binarised at ``threshold`` first.
        theta: (B, 2, 3) ``input_from_output`` matrices (the ``lcvg_env.control`` convention).
        residual: (B, 2) (or (2,) for all) normalised (x, y) motion still owed to each mask, or
            None (zeros).
        threshold: binarisation threshold of the input masks.
        limit_px: largest residual carried, in pixels per axis.

    Returns:
        ``(moved, residual)``: (B, 1, H, W) {0, 1} masks and the (B, 2) residual to pass to the
        next step (zero where the input or the output is empty).
    """
    masks = _require_masks("masks", masks, channels=1)
    b, _, h, w = masks.shape
    theta = _require_theta("theta", theta, b).to(masks.dtype)
    residual = _require_points("residual", residual, b, masks)
    masks = binarize(masks, threshold)
    # owing a forward shift r: x_in = A (x_out - r) + t, so t becomes t - A r
    theta = _shifted(theta, residual)
    warped = _warp_nearest(masks, theta)
    before = mask_centroids(masks)[:, 0]  # (B, 2)
    forward = _invert(theta)
    intended = (forward[..., :2] @ before.unsqueeze(-1)).squeeze(-1) + forward[..., 2]
    owed = intended - mask_centroids(warped)[:, 0]
    limit = limit_px / _pixel_scale((h, w), masks)
    keep = (owed.abs() <= limit).all(-1) & masks.flatten(1).any(1) & warped.flatten(1).any(1)
    return warped, torch.where(keep.unsqueeze(-1), owed, torch.zeros_like(owed))


def carry_masks(
    templates: Tensor, poses: Tensor, theta: Tensor, *, threshold: float = 0.5,
    size: tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Move masks that keep their shape: each is its first mask seen through an accumulated pose.

    An object whose mask is carried from step to step (rather than found again in every
    generated frame) is a template, the binary mask it had when tracking began, and a pose,
    the ``input_from_output`` matrix from the current frame to the template. A step's
    transform ``theta`` is chained onto the pose (:func:`compose_affine`) and the template is
    sampled at the nearest pixel through the new pose. Motion therefore adds up exactly in the
    pose (slow motions are not rounded away, nothing is owed), the moved mask is always within
    half a pixel of where the sum of the transforms puts it, and its shape does not degrade
    however many rotations and scalings it goes through; parts that leave the frame come back
    when the object does.

    Args:
        templates: (B, 1, H, W) masks, binarised at ``threshold``.
        poses: (B, 2, 3) current poses (the identity when tracking begins).
        theta: (B, 2, 3) ``input_from_output`` transforms of this step.
        threshold: binarisation threshold of the templates.
        size: the frame's (h, w), None: the templates'. Templates larger than it by the same
            margin on every side hold what of each object lies beyond the frame
            (:func:`warp_masks`).

    Returns:
        ``(moved, poses)``: (B, 1, h, w) {0, 1} masks and the (B, 2, 3) poses after the step.
    """
    templates = _require_masks("templates", templates, channels=1)
    b = templates.shape[0]
    poses = _require_theta("poses", poses, b).to(templates.dtype)
    theta = _require_theta("theta", theta, b).to(templates.dtype)
    poses = compose_affine(poses, theta)
    return _warp_nearest(binarize(templates, threshold), poses, _check_size(size, templates)), poses


def _shifted(theta: Tensor, forward_shift: Tensor) -> Tensor:
    """``theta`` (B, 2, 3) followed by a forward translation (B, 2) of its output."""
    shift = theta[..., 2] - (theta[..., :2] @ forward_shift.unsqueeze(-1)).squeeze(-1)
    return torch.cat([theta[..., :2], shift.unsqueeze(-1)], dim=-1)


def _warp_nearest(masks: Tensor, theta: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """(B, C, H, W) maps (binary masks, or pixels) warped by nearest-pixel sampling.

    Values are moved, never mixed: masks neither erode nor grow, pixels keep their colours.
    A motion of exactly half a pixel would round up at some pixels and down at others
    (``grid_sample`` rounds half to even); nudging every motion forward by a thousandth of a
    pixel makes it round the same way everywhere.
    """
    h, w = size if size is not None else masks.shape[-2:]
    nudge = _TIE_NUDGE_PX / _pixel_scale((h, w), theta)
    return _warp(masks, _shifted(theta, nudge.expand(theta.shape[0], 2)), mode="nearest",
                 size=(h, w))


def warp_nearest(maps: Tensor, theta: Tensor) -> Tensor:
    """Warp (B, C, H, W) maps by (B, 2, 3) ``input_from_output`` matrices, nearest pixel.

    The sampling :func:`warp_binary` and :func:`carry_masks` use for masks, for any maps (an
    object's pixels move with its mask and keep their values; outside the frame is 0).
    """
    maps = _require_tensor("maps", maps)
    if maps.dim() != 4 or not maps.is_floating_point():
        raise ValueError(f"maps must be a float (B, C, H, W) tensor, got {_describe(maps)}")
    theta = _require_theta("theta", theta, maps.shape[0]).to(maps.dtype)
    return _warp_nearest(maps, theta)


def union_masks(masks: Tensor) -> Tensor:
    """Union of per-object masks: (B, K, H, W) -> (B, 1, H, W) elementwise maximum."""
    masks = _require_masks("masks", masks)
    return masks.amax(dim=1, keepdim=True)


def warp_objects(object_masks_: Tensor, theta: Tensor, threshold: float = 0.5) -> Tensor:
    """Move each object by its own transform and unite the results (multi-object control).

    Args:
        object_masks_: (B, K, H, W) per-object masks (e.g. from :func:`object_masks`).
        theta: (B, K, 2, 3) ``input_from_output`` per object.
        threshold: the united mask is binarised at this threshold.

    Returns:
        (B, 1, H, W) {0, 1} union of the warped objects.
    """
    masks = _require_masks("object_masks", object_masks_)
    theta = _require_tensor("theta", theta)
    b, k, h, w = masks.shape
    if tuple(theta.shape) != (b, k, 2, 3):
        raise ValueError(f"theta must have shape (B, K, 2, 3) = ({b}, {k}, 2, 3), got "
                         f"{_describe(theta)}")
    flat = _require_theta("theta", theta.reshape(b * k, 2, 3))
    warped = _warp(masks.reshape(b * k, 1, h, w), flat.to(masks.dtype))
    return binarize(warped.reshape(b, k, h, w).amax(dim=1, keepdim=True), threshold)
