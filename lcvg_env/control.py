"""Mask control: warp, split, measure and fit the foreground masks that drive the generator.

Convention (the only one in this module; every function follows it)
-------------------------------------------------------------------
- **Normalised coordinates.** A point is ``(x, y)`` with ``x`` to the right and ``y`` down, both
  in ``[-1, 1]`` across the frame, with ``align_corners=False``: ``-1`` and ``1`` are the outer
  *edges* of the border pixels, so the centre of pixel column ``j`` of a ``W``-wide frame is at
  ``x = (2 j + 1) / W - 1`` (the same for rows with ``H``).
- **Pixel coordinates.** ``(x, y)`` in pixels with the centre of pixel ``(row i, column j)`` at
  ``(j, i)``; :func:`pixel_to_normalized` and :func:`normalized_to_pixel` convert.
- **Matrices.** A ``theta`` of shape ``(B, 2, 3)`` maps OUTPUT coordinates to INPUT coordinates
  (``input_from_output``, the :func:`torch.nn.functional.affine_grid` convention): the output
  pixel at ``p`` samples the input at ``theta @ [p; 1]``. Hence
  ``warp_masks(m_t, theta) ~= m_{t+1}`` when ``theta`` is the control from frame ``t`` to
  ``t + 1``. The inverse, ``output_from_input``, is the forward motion of the object; convert
  between the two with :func:`invert_affine`.
- **Parameters.** User-facing parameters (:data:`PARAM_NAMES`) describe the FORWARD motion of
  the object: ``dx > 0`` moves it right by ``dx`` normalised units (``dx * W / 2`` pixels),
  ``rotation`` in radians (positive turns x towards y, i.e. clockwise on screen because y points
  down), ``log_scale_x`` / ``log_scale_y`` are natural logs of the scale factors and ``shear``
  is the horizontal shear factor ``k`` of ``[[1, k], [0, 1]]``. The linear part is
  ``R(rotation) @ [[1, shear], [0, 1]] @ diag(exp(log_scale_x), exp(log_scale_y))`` (scale
  first, then shear, then rotate) and acts about a pivot ``center`` (normalised, default the
  frame centre ``(0, 0)``); translation comes last.
- **Pixel-isotropic frame.** Normalised x and y units have different pixel lengths on a
  non-square frame (``W / 2`` and ``H / 2`` pixels). Rotation, shear and the similarity fit are
  therefore done in pixel units, ``u = x * W / 2``, ``v = y * H / 2``, so that a rotation looks
  like a rotation on a 96x256 frame. Functions that need it take ``size=(H, W)``; with
  ``size=None`` the normalised frame itself is treated as isotropic (right for square frames).

Shapes: ``B`` batch, ``C`` channels, ``K`` objects, ``H``, ``W`` frame height and width.

Inputs are checked: shapes and dtypes always, values (NaN/inf, negative mask weights) unless
the call runs inside :func:`trusted_values`, for callers that pass tensors they made
themselves (the simulator's state): each value scan is a pass over the tensor and, on a GPU, a
device synchronisation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "FIT_MODES",
    "PARAM_NAMES",
    "ControlFit",
    "binarize",
    "carry_masks",
    "compose_affine",
    "fit_control",
    "identity_matrix",
    "invert_affine",
    "mask_areas",
    "mask_boxes",
    "mask_centroids",
    "matrix_to_params",
    "nonparametric_edit",
    "normalized_to_pixel",
    "object_masks",
    "params_to_matrix",
    "pixel_to_normalized",
    "trusted_values",
    "union_masks",
    "warp_binary",
    "warp_masks",
    "warp_nearest",
    "warp_objects",
]

PARAM_NAMES: tuple[str, ...] = ("dx", "dy", "rotation", "log_scale_x", "log_scale_y", "shear")
"""Names of the columns of a ``(B, 6)`` parameter tensor, in order (see the module docstring)."""

FIT_MODES: tuple[str, ...] = ("translation", "similarity", "affine")
"""Transform families that :func:`fit_control` can fit."""


class ControlFit(NamedTuple):
    """Result of :func:`fit_control`, one entry per source/target pair."""

    theta: Tensor
    """(B, 2, 3) fitted ``input_from_output`` matrices: ``warp_masks(source, theta) ~= target``."""
    valid: Tensor
    """(B,) bool; False where a mask was empty or near-empty (``theta`` is then the identity)."""
    iou: Tensor
    """(B,) IoU of ``binarize(warp_masks(binarize(source), theta))`` and ``binarize(target)``
    (0 where both are empty)."""


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _describe(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"Tensor(shape={tuple(x.shape)}, dtype={x.dtype}, device={x.device})"
    text = repr(x)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(x).__name__} {text}"


def _require_tensor(name: str, x: Any) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_describe(x)}")
    if x.is_complex():
        raise TypeError(f"{name} must be real, got {_describe(x)}")
    return x


_CHECK_VALUES: ContextVar[bool] = ContextVar("lcvg_control_check_values", default=True)


@contextmanager
def trusted_values() -> Iterator[None]:
    """Skip this module's value scans (NaN/inf, negative masks) inside the block.

    Shapes and dtypes are still checked. For tensors the caller made itself, such as the
    simulator's state, whose first inputs it has already checked.
    """
    token = _CHECK_VALUES.set(False)
    try:
        yield
    finally:
        _CHECK_VALUES.reset(token)


def _require_finite(name: str, x: Tensor) -> None:
    # one reduction instead of four elementwise passes: a NaN or inf makes the sum non-finite;
    # finite values whose sum overflows fall through to the exact test
    if (_CHECK_VALUES.get() and x.is_floating_point() and not bool(torch.isfinite(x.sum()))
            and not bool(torch.isfinite(x).all())):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {bad} NaN/inf values: {_describe(x)}")


def _require_float(name: str, x: Tensor) -> Tensor:
    """Finite floating copy of ``x``: bool and integer tensors become float32."""
    if not x.is_floating_point():
        x = x.to(torch.float32)
    _require_finite(name, x)
    return x


def _require_masks(name: str, x: Any, *, channels: int | None = None) -> Tensor:
    """Validate a (B, C, H, W) mask tensor and return it as a finite float tensor."""
    x = _require_tensor(name, x)
    if x.dim() != 4 or (channels is not None and x.shape[1] != channels):
        want = f"(B, {channels}, H, W)" if channels is not None else "(B, C, H, W)"
        raise ValueError(f"{name} must have shape {want}, got {_describe(x)}")
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"{name} must have a non-empty frame, got {_describe(x)}")
    return _require_float(name, x)


def _require_nonnegative(name: str, x: Tensor) -> None:
    if _CHECK_VALUES.get() and x.numel() and bool((x < 0).any()):
        raise ValueError(f"{name} must be >= 0 (mask weights), got min {float(x.min())}")


def _require_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"size must be a pair of positive ints (H, W), got {size!r}")
    return int(size[0]), int(size[1])


def _require_theta(name: str, theta: Any, batch: int | None = None) -> Tensor:
    theta = _require_tensor(name, theta)
    if not theta.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {_describe(theta)}")
    if theta.dim() != 3 or tuple(theta.shape[1:]) != (2, 3):
        raise ValueError(f"{name} must have shape (B, 2, 3), got {_describe(theta)}")
    if batch is not None and theta.shape[0] not in (1, batch):
        raise ValueError(
            f"{name} must have batch size 1 or {batch} (the masks' batch), got {_describe(theta)}"
        )
    _require_finite(name, theta)
    return theta


def _require_points(name: str, points: Any, batch: int, like: Tensor) -> Tensor:
    """Validate one (x, y) per batch entry: (B, 2), or (2,) for all; None gives zeros.

    Returns (B, 2) in the dtype and on the device of ``like``.
    """
    if points is None:
        return like.new_zeros(batch, 2)
    points = _require_tensor(name, points)
    if not points.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {_describe(points)}")
    pairs = points.unsqueeze(0) if points.dim() == 1 else points
    if pairs.dim() != 2 or pairs.shape[1] != 2 or pairs.shape[0] not in (1, batch):
        raise ValueError(f"{name} must have shape (B, 2) or (2,) with B={batch}, got "
                         f"{_describe(points)}")
    _require_finite(name, pairs)
    return pairs.to(device=like.device, dtype=like.dtype).expand(batch, 2)


# --------------------------------------------------------------------------------------------
# coordinates and matrices
# --------------------------------------------------------------------------------------------


def _points_and_width_height(points: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Validate (..., 2) float points and return them with the tensor ``[W, H]``."""
    points = _require_tensor("points", points)
    hw = _require_size(size)
    assert hw is not None
    if points.dim() < 1 or points.shape[-1] != 2:
        raise ValueError(f"points must have shape (..., 2), got {_describe(points)}")
    points = _require_float("points", points)
    return points, points.new_tensor([hw[1], hw[0]])


def pixel_to_normalized(points: Tensor, size: tuple[int, int]) -> Tensor:
    """Convert pixel ``(x, y)`` points (pixel centres at integers) to normalised coordinates.

    Args:
        points: (..., 2) pixel coordinates ``(x, y)``; pixel ``(row i, column j)`` is at
            ``(j, i)``.
        size: frame size ``(H, W)``.

    Returns:
        (..., 2) normalised ``(x, y)`` with ``align_corners=False``: ``(2 x + 1) / W - 1``.
    """
    points, scale = _points_and_width_height(points, size)
    return (2.0 * points + 1.0) / scale - 1.0


def normalized_to_pixel(points: Tensor, size: tuple[int, int]) -> Tensor:
    """Convert normalised ``(x, y)`` points to pixel coordinates (pixel centres at integers).

    Args:
        points: (..., 2) normalised ``(x, y)`` (``align_corners=False``).
        size: frame size ``(H, W)``.

    Returns:
        (..., 2) pixel ``(x, y)``: ``((x + 1) W - 1) / 2``; inverse of
        :func:`pixel_to_normalized`.
    """
    points, scale = _points_and_width_height(points, size)
    return ((points + 1.0) * scale - 1.0) / 2.0


def identity_matrix(
    batch: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Identity transforms, shape (B, 2, 3) (no motion in either convention)."""
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 0:
        raise ValueError(f"batch must be an int >= 0, got {batch!r}")
    return torch.eye(2, 3, device=device, dtype=dtype).expand(batch, 2, 3).clone()


def _inverse_2x2(a: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse and determinant of (..., 2, 2) matrices."""
    det = a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] * a[..., 1, 0]
    adj = torch.stack(
        [
            torch.stack([a[..., 1, 1], -a[..., 0, 1]], dim=-1),
            torch.stack([-a[..., 1, 0], a[..., 0, 0]], dim=-1),
        ],
        dim=-2,
    )
    return adj / det[..., None, None], det


def _invert(theta: Tensor) -> Tensor:
    inv, _ = _inverse_2x2(theta[..., :2])
    shift = -(inv @ theta[..., 2:])
    return torch.cat([inv, shift], dim=-1)


def invert_affine(theta: Tensor) -> Tensor:
    """Invert (B, 2, 3) affine matrices: ``input_from_output`` <-> ``output_from_input``.

    Raises:
        ValueError: if a matrix is singular (|det| <= 1e-12), naming the offending indices.
    """
    theta = _require_theta("theta", theta)
    det = theta[:, 0, 0] * theta[:, 1, 1] - theta[:, 0, 1] * theta[:, 1, 0]
    bad = (det.abs() <= 1e-12).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"theta is singular at batch indices {bad[:10]} (det ~ 0)")
    return _invert(theta)


def compose_affine(first: Tensor, second: Tensor) -> Tensor:
    """Chain two affine maps: (B, 2, 3) matrix of ``p -> first @ [second @ [p; 1]; 1]``.

    For ``input_from_output`` matrices this chains two warps: warping by ``first`` and then by
    ``second`` equals one warp by ``compose_affine(first, second)``.
    """
    first = _require_theta("first", first)
    second = _require_theta("second", second, first.shape[0]).to(first.dtype)
    linear = first[..., :2] @ second[..., :2]
    shift = first[..., :2] @ second[..., 2:] + first[..., 2:]
    return torch.cat([linear, shift], dim=-1)


def _pixel_scale(size: tuple[int, int] | None, like: Tensor) -> Tensor:
    """(2,) pixels per normalised unit along (x, y): ``(W / 2, H / 2)``, or ones if no size."""
    if size is None:
        return like.new_ones(2)
    return like.new_tensor([size[1] / 2.0, size[0] / 2.0])


def params_to_matrix(
    params: Tensor, center: Tensor | None = None, *, size: tuple[int, int] | None = None
) -> Tensor:
    """Turn forward-motion parameters into ``input_from_output`` matrices for :func:`warp_masks`.

    Args:
        params: (B, 6) columns :data:`PARAM_NAMES` (``dx, dy, rotation, log_scale_x,
            log_scale_y, shear``) or (B, 2) translations ``(dx, dy)`` in normalised units. They
            describe how the OBJECT moves (``dx > 0`` moves it right).
        center: pivot of rotation/scale/shear, normalised ``(x, y)``, (B, 2) or (2,); default
            the frame centre.
        size: frame ``(H, W)``; rotation and shear then act in pixel units so they look right
            on non-square frames. ``None`` treats normalised units as isotropic.

    Returns:
        theta: (B, 2, 3), same dtype/device as ``params``. Forward motion
        ``p = c + A (q - c) + t`` with ``A = S^-1 R Sh diag(sx, sy) S`` (``S`` = pixels per
        unit) gives ``theta = [A^-1 | c - A^-1 (c + t)]``.
    """
    params = _require_tensor("params", params)
    if not params.is_floating_point():
        raise TypeError(f"params must be a floating tensor, got {_describe(params)}")
    if params.dim() != 2 or params.shape[1] not in (2, 6):
        raise ValueError(f"params must have shape (B, 6) or (B, 2), got {_describe(params)}")
    _require_finite("params", params)
    hw = _require_size(size)
    batch = params.shape[0]
    c = _require_points("center", center, batch, params)
    if params.shape[1] == 2:
        params = torch.cat([params, params.new_zeros(batch, 4)], dim=1)
    dx, dy, rot, lsx, lsy, shear = params.unbind(dim=1)
    cos, sin = torch.cos(rot), torch.sin(rot)
    sx, sy = torch.exp(lsx), torch.exp(lsy)
    # A_pix = R @ Sh @ diag(sx, sy), written out; rows (a00, a01), (a10, a11)
    a00 = cos * sx
    a01 = cos * shear * sy - sin * sy
    a10 = sin * sx
    a11 = sin * shear * sy + cos * sy
    k = _pixel_scale(hw, params)  # (2,) pixels per unit along x, y
    ratio_yx = k[1] / k[0]
    # A_norm = K^-1 A_pix K with K = diag(kx, ky)
    forward_lin = torch.stack(
        [
            torch.stack([a00, a01 * ratio_yx], dim=-1),
            torch.stack([a10 / ratio_yx, a11], dim=-1),
        ],
        dim=-2,
    )  # (B, 2, 2)
    inv_lin, _ = _inverse_2x2(forward_lin)
    shift = torch.stack([dx, dy], dim=-1)
    offset = c - (inv_lin @ (c + shift).unsqueeze(-1)).squeeze(-1)
    return torch.cat([inv_lin, offset.unsqueeze(-1)], dim=-1)


def matrix_to_params(
    theta: Tensor, center: Tensor | None = None, *, size: tuple[int, int] | None = None
) -> Tensor:
    """Exact inverse of :func:`params_to_matrix` (same ``center`` and ``size``).

    Args:
        theta: (B, 2, 3) ``input_from_output`` matrices.
        center: pivot, (B, 2) or (2,) normalised; default the frame centre.
        size: frame ``(H, W)`` or ``None``, as for :func:`params_to_matrix`.

    Returns:
        (B, 6) forward-motion parameters in :data:`PARAM_NAMES` order; rotation in
        ``(-pi, pi]``.

    Raises:
        ValueError: if a matrix is singular or mirrors (det <= 0), which the parameters cannot
            express.
    """
    theta = _require_theta("theta", theta)
    hw = _require_size(size)
    batch = theta.shape[0]
    c = _require_points("center", center, batch, theta)
    det_theta = theta[:, 0, 0] * theta[:, 1, 1] - theta[:, 0, 1] * theta[:, 1, 0]
    bad = (det_theta <= 1e-12).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"theta must have a positive determinant (no mirroring), got det <= 0 at batch "
            f"indices {bad[:10]}: {det_theta[bad[:10]].tolist()}"
        )
    forward = _invert(theta)  # output_from_input: p = A q + b
    lin, b = forward[:, :, :2], forward[:, :, 2]
    shift = b - c + (lin @ c.unsqueeze(-1)).squeeze(-1)
    k = _pixel_scale(hw, theta)
    ratio_yx = k[1] / k[0]
    a00, a01 = lin[:, 0, 0], lin[:, 0, 1] / ratio_yx
    a10, a11 = lin[:, 1, 0] * ratio_yx, lin[:, 1, 1]
    rot = torch.atan2(a10, a00)
    sx = torch.sqrt(a00 * a00 + a10 * a10)
    cos, sin = torch.cos(rot), torch.sin(rot)
    # U = R(-rot) @ A_pix = [[sx, shear * sy], [0, sy]]
    u01 = cos * a01 + sin * a11
    u11 = -sin * a01 + cos * a11
    return torch.stack(
        [shift[:, 0], shift[:, 1], rot, torch.log(sx), torch.log(u11), u01 / u11], dim=1
    )


# --------------------------------------------------------------------------------------------
# warping, binarising, editing
# --------------------------------------------------------------------------------------------


def warp_masks(
    masks: Tensor, theta: Tensor, *, mode: str = "bilinear", padding_mode: str = "zeros"
) -> Tensor:
    """Warp masks (or any maps) with ``input_from_output`` matrices; differentiable.

    Args:
        masks: (B, C, H, W); bool/integer masks are converted to float32.
        theta: (B, 2, 3) or (1, 2, 3) ``input_from_output`` (see the module convention); cast to
            the masks' dtype, must be on their device.
        mode: ``grid_sample`` interpolation, ``"bilinear"`` or ``"nearest"``.
        padding_mode: what lies outside the input frame (``"zeros"``: background).

    Returns:
        (B, C, H, W) warped masks: ``out(p) = masks(theta @ [p; 1])``. Soft; call
        :func:`binarize` for {0, 1} masks.
    """
    masks = _require_masks("masks", masks)
    theta = _require_theta("theta", theta, masks.shape[0])
    if theta.device != masks.device:
        raise ValueError(f"theta is on {theta.device} but masks are on {masks.device}")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(f"padding_mode must be zeros/border/reflection, got {padding_mode!r}")
    return _warp(masks, theta.to(masks.dtype).expand(masks.shape[0], 2, 3), mode, padding_mode)


def _sampling_grid(theta: Tensor, h: int, w: int) -> Tensor:
    """(B, h, w, 2) input coordinates ``theta @ [x; y; 1]`` of the output pixel centres.

    Equal to ``F.affine_grid(theta, (B, C, h, w), align_corners=False)``, but cheaper.
    """
    xs = _pixel_centres(w, theta).view(1, 1, w)
    ys = _pixel_centres(h, theta).view(1, h, 1)
    t = theta.unsqueeze(-1).unsqueeze(-1)  # (B, 2, 3, 1, 1)
    gx = t[:, 0, 0] * xs + (t[:, 0, 1] * ys + t[:, 0, 2])
    gy = t[:, 1, 0] * xs + (t[:, 1, 1] * ys + t[:, 1, 2])
    return torch.stack([gx, gy], dim=-1)


def _warp(masks: Tensor, theta: Tensor, mode: str = "bilinear", padding: str = "zeros") -> Tensor:
    grid = _sampling_grid(theta, masks.shape[-2], masks.shape[-1])
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
        theta: (B, 2, 3) ``input_from_output`` matrices (the module convention).
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
    templates: Tensor, poses: Tensor, theta: Tensor, *, threshold: float = 0.5
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

    Returns:
        ``(moved, poses)``: (B, 1, H, W) {0, 1} masks and the (B, 2, 3) poses after the step.
    """
    templates = _require_masks("templates", templates, channels=1)
    b = templates.shape[0]
    poses = _require_theta("poses", poses, b).to(templates.dtype)
    theta = _require_theta("theta", theta, b).to(templates.dtype)
    poses = compose_affine(poses, theta)
    return _warp_nearest(binarize(templates, threshold), poses), poses


def _shifted(theta: Tensor, forward_shift: Tensor) -> Tensor:
    """``theta`` (B, 2, 3) followed by a forward translation (B, 2) of its output."""
    shift = theta[..., 2] - (theta[..., :2] @ forward_shift.unsqueeze(-1)).squeeze(-1)
    return torch.cat([theta[..., :2], shift.unsqueeze(-1)], dim=-1)


def _warp_nearest(masks: Tensor, theta: Tensor) -> Tensor:
    """(B, C, H, W) maps (binary masks, or pixels) warped by nearest-pixel sampling.

    Values are moved, never mixed: masks neither erode nor grow, pixels keep their colours.
    A motion of exactly half a pixel would round up at some pixels and down at others
    (``grid_sample`` rounds half to even); nudging every motion forward by a thousandth of a
    pixel makes it round the same way everywhere.
    """
    h, w = masks.shape[-2:]
    nudge = _TIE_NUDGE_PX / _pixel_scale((h, w), theta)
    return _warp(masks, _shifted(theta, nudge.expand(theta.shape[0], 2)), mode="nearest")


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


# --------------------------------------------------------------------------------------------
# connected components and per-object measurements
# --------------------------------------------------------------------------------------------


def _neighbour_max(labels: Tensor, connectivity: int) -> Tensor:
    """Max over each pixel's neighbourhood (itself included) of (B, 1, H, W) integer labels."""
    padded = F.pad(labels, (1, 1, 1, 1))
    centre = padded[..., 1:-1, 1:-1]
    if connectivity == 8:  # separable 3x3 maximum
        rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
        return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])
    horiz = torch.maximum(padded[..., 1:-1, :-2], padded[..., 1:-1, 2:])
    vert = torch.maximum(padded[..., :-2, 1:-1], padded[..., 2:, 1:-1])
    return torch.maximum(torch.maximum(horiz, vert), centre)


def connected_components(masks: Tensor, connectivity: int = 8, threshold: float = 0.5) -> Tensor:
    """Label the connected components of binarised masks, batched on any device.

    Parallel hooking with pointer jumping, no per-pixel Python loops. Every label names one
    pixel of its component (its root). Each round (1) hooks: the root of every label adopts the
    largest label found next to any pixel carrying it (a 3x3, or cross-shaped, max-pool and a
    scatter-max), then (2) jumps: every pixel, roots included, repeatedly takes the label of the
    pixel its label names, which halves the depth of the label chains at each jump. Labels only
    grow and stay inside their component; rounds stop when nothing changes.

    Args:
        masks: (B, 1, H, W) masks, binarised at ``threshold``.
        connectivity: 8 (default) or 4.
        threshold: foreground is ``masks > threshold``.

    Returns:
        (B, H, W) int64 labels: 0 for background; each component gets ``H * W - i`` where ``i``
        is the raster index of its first pixel (so labels are unique per image and earlier
        components get larger labels).
    """
    masks = _require_masks("masks", masks, channels=1)
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    b, _, h, w = masks.shape
    n = h * w
    fg = (masks > threshold).view(b, n)
    ramp = torch.arange(n, 0, -1, device=masks.device, dtype=torch.int64)
    # (B, n + 1); label L names pixel n - L; background 0 names the sentinel n, which stays 0
    labels = F.pad(torch.where(fg, ramp, 0), (0, 1))
    while True:
        grid = labels[:, :n].view(b, 1, h, w)
        neighbours = F.pad(_neighbour_max(grid, connectivity).view(b, n), (0, 1))
        new = labels.scatter_reduce(1, n - labels, neighbours, reduce="amax")  # hook the roots
        new[:, n] = 0
        for _ in range(4):  # pointer jumping
            new = new.gather(1, n - new)
        if torch.equal(new, labels):
            break
        labels = new
    return labels[:, :n].reshape(b, h, w)


def object_masks(
    masks: Tensor, k: int, *, connectivity: int = 8, threshold: float = 0.5
) -> Tensor:
    """Split binarised masks into their ``k`` largest connected components.

    Args:
        masks: (B, 1, H, W) masks (soft masks are binarised at ``threshold``).
        k: number of objects to return (>= 1).
        connectivity: 8 (default) or 4 neighbours.
        threshold: binarisation threshold.

    Returns:
        (B, k, H, W) {0, 1} masks in the float dtype of ``masks`` (float32 for bool/integer),
        sorted by area, largest first (ties: the component whose first pixel in raster order
        comes first); zero masks pad images with fewer than ``k`` components.
    """
    masks = _require_masks("masks", masks, channels=1)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    b, _, h, w = masks.shape
    n = h * w
    labels = connected_components(masks, connectivity, threshold)  # (B, H, W)
    flat = labels.view(b, n)
    offsets = torch.arange(b, device=masks.device).unsqueeze(1) * (n + 1)
    counts = torch.bincount((flat + offsets).view(-1), minlength=b * (n + 1)).view(b, n + 1)
    counts[:, 0] = 0  # background
    label_ids = torch.arange(n + 1, device=masks.device)
    key = counts * (n + 1) + label_ids  # area first, then larger label = earlier first pixel
    kk = min(k, n + 1)
    top = key.topk(kk, dim=1).indices  # (B, kk) label ids
    top_counts = counts.gather(1, top)
    selected = (labels.unsqueeze(1) == top.view(b, kk, 1, 1)) & (top_counts > 0).view(b, kk, 1, 1)
    out = selected.to(masks.dtype)
    if kk < k:
        out = torch.cat([out, out.new_zeros(b, k - kk, h, w)], dim=1)
    return out


def _pixel_centres(n: int, like: Tensor) -> Tensor:
    """(n,) normalised centres of n pixels along one axis (``align_corners=False``)."""
    return (2.0 * torch.arange(n, device=like.device, dtype=like.dtype) + 1.0) / n - 1.0


def mask_areas(masks: Tensor) -> Tensor:
    """Area of each mask as a fraction of the frame: (B, K, H, W) -> (B, K) (soft = weighted)."""
    masks = _require_masks("masks", masks)
    _require_nonnegative("masks", masks)
    return masks.mean(dim=(-2, -1))


def mask_centroids(masks: Tensor) -> Tensor:
    """Centroid of each mask in normalised ``(x, y)``: (B, K, H, W) -> (B, K, 2).

    Soft masks are weighted by their values; empty masks give ``(0, 0)`` (never NaN).
    """
    masks = _require_masks("masks", masks)
    _require_nonnegative("masks", masks)
    h, w = masks.shape[-2:]
    total = masks.sum(dim=(-2, -1))
    mx = masks.sum(dim=-2) @ _pixel_centres(w, masks)  # (B, K)
    my = masks.sum(dim=-1) @ _pixel_centres(h, masks)
    safe = total.clamp_min(torch.finfo(masks.dtype).tiny)
    cent = torch.stack([mx / safe, my / safe], dim=-1)
    return torch.where((total > 0).unsqueeze(-1), cent, torch.zeros_like(cent))


def mask_boxes(masks: Tensor, threshold: float = 0.5) -> Tensor:
    """Bounding box of each binarised mask, normalised ``(x0, y0, x1, y1)``: (B,K,H,W)->(B,K,4).

    The box covers whole pixels: ``x0`` is the left edge of the leftmost pixel and ``x1`` the
    right edge of the rightmost (a full-frame mask gives ``(-1, -1, 1, 1)``; in pixel
    coordinates that is ``(j_min - 0.5, i_min - 0.5, j_max + 0.5, i_max + 0.5)``). Empty masks
    give zeros.
    """
    masks = _require_masks("masks", masks)
    h, w = masks.shape[-2:]
    fg = masks > threshold
    cols = fg.any(dim=-2)  # (B, K, W)
    rows = fg.any(dim=-1)  # (B, K, H)
    present = cols.any(dim=-1)
    dtype = masks.dtype
    j0 = cols.to(torch.uint8).argmax(dim=-1).to(dtype)
    j1 = (w - 1 - cols.flip(-1).to(torch.uint8).argmax(dim=-1)).to(dtype)
    i0 = rows.to(torch.uint8).argmax(dim=-1).to(dtype)
    i1 = (h - 1 - rows.flip(-1).to(torch.uint8).argmax(dim=-1)).to(dtype)
    box = torch.stack([2 * j0 / w - 1, 2 * i0 / h - 1, 2 * (j1 + 1) / w - 1, 2 * (i1 + 1) / h - 1],
                      dim=-1)
    return torch.where(present.unsqueeze(-1), box, torch.zeros_like(box))


# --------------------------------------------------------------------------------------------
# fitting a control between two masks
# --------------------------------------------------------------------------------------------


def _moments(masks: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Moments of (B, H, W) weights in centred pixel units (``u = x W / 2``, ``v = y H / 2``).

    Returns:
        area (B,) in pixels, mean (B, 2) ``(u, v)``, covariance (B, 2, 2) (+ I / 12, the
        variance of one pixel, which keeps it invertible) and central raw moments
        (B, 5, 5) ``M[p, q] = E[(u - mu_u)^p (v - mu_v)^q]``; all float64.
    """
    m = masks.to(torch.float64)
    b, h, w = m.shape
    u = torch.arange(w, device=m.device, dtype=m.dtype) + 0.5 - w / 2.0
    v = torch.arange(h, device=m.device, dtype=m.dtype) + 0.5 - h / 2.0
    area = m.sum(dim=(-2, -1))
    safe = area.clamp_min(1e-12)
    mu_u = (m.sum(dim=-2) @ u) / safe
    mu_v = (m.sum(dim=-1) @ v) / safe
    du = u.unsqueeze(0) - mu_u.unsqueeze(1)  # (B, W)
    dv = v.unsqueeze(0) - mu_v.unsqueeze(1)  # (B, H)
    powers = torch.arange(5, device=m.device, dtype=m.dtype)
    upow = du.unsqueeze(-1) ** powers  # (B, W, 5)
    vpow = dv.unsqueeze(-1) ** powers  # (B, H, 5)
    raw = torch.bmm(torch.bmm(vpow.transpose(1, 2), m), upow)  # (B, 5[q], 5[p])
    raw = raw.transpose(1, 2) / safe.view(b, 1, 1)  # (B, 5[p], 5[q])
    cov = torch.stack(
        [
            torch.stack([raw[:, 2, 0], raw[:, 1, 1]], -1),
            torch.stack([raw[:, 1, 1], raw[:, 0, 2]], -1),
        ],
        dim=-2,
    ) + torch.eye(2, dtype=m.dtype, device=m.device) / 12.0
    return area, torch.stack([mu_u, mu_v], dim=-1), cov, raw


def _complex_moment(raw: Tensor, a: Tensor, b: Tensor, p: int, q: int) -> Tensor:
    """E[z^p conj(z)^q] for ``z = a u + b v`` (complex a, b (B,)) from raw moments (B, 5, 5)."""
    coef = torch.ones_like(a).unsqueeze(-1)  # coefficients of u^(n-i) v^i, (B, n + 1)
    for factor_u, factor_v in [(a, b)] * p + [(a.conj(), b.conj())] * q:
        grown = torch.zeros(coef.shape[0], coef.shape[1] + 1, dtype=coef.dtype, device=coef.device)
        grown[:, :-1] += coef * factor_u.unsqueeze(-1)
        grown[:, 1:] += coef * factor_v.unsqueeze(-1)
        coef = grown
    n = p + q
    values = torch.stack([raw[:, n - i, i] for i in range(n + 1)], dim=-1).to(coef.dtype)
    return (coef * values).sum(dim=-1)


def _sqrtm_spd(c: Tensor) -> tuple[Tensor, Tensor]:
    """Square root and inverse square root of (B, 2, 2) symmetric positive definite matrices."""
    evals, evecs = torch.linalg.eigh(c)
    evals = evals.clamp_min(1e-12)
    root = evecs @ torch.diag_embed(evals.sqrt()) @ evecs.transpose(-1, -2)
    inv_root = evecs @ torch.diag_embed(evals.rsqrt()) @ evecs.transpose(-1, -2)
    return root, inv_root


def _rotation(angle: Tensor) -> Tensor:
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def _angle_candidates(
    raw_s: Tensor, raw_t: Tensor, ks: Tensor, kt: Tensor, orders: Sequence[tuple[int, int]]
) -> Tensor:
    """Rotations psi with ``z_t ~ exp(i psi) z_s`` in the (whitened) frames, from moments.

    A complex moment E[z^p conj(z)^q] turns by ``exp(i (p - q) psi)`` under the rotation, so
    each order gives ``p - q`` candidate angles (the shape's symmetry leaves the rest
    ambiguous). ``ks``/``kt`` (B, 2, 2) map centred pixels to the frames. Returns (B, n) angles,
    the first being 0 (no rotation).
    """
    cdtype = torch.complex128
    a_s = torch.complex(ks[:, 0, 0], ks[:, 1, 0]).to(cdtype)
    b_s = torch.complex(ks[:, 0, 1], ks[:, 1, 1]).to(cdtype)
    a_t = torch.complex(kt[:, 0, 0], kt[:, 1, 0]).to(cdtype)
    b_t = torch.complex(kt[:, 0, 1], kt[:, 1, 1]).to(cdtype)
    angles = [torch.zeros_like(raw_s[:, 0, 0])]
    for p, q in orders:
        ms = _complex_moment(raw_s, a_s, b_s, p, q)
        mt = _complex_moment(raw_t, a_t, b_t, p, q)
        order = p - q
        base = (torch.angle(mt) - torch.angle(ms)) / order
        angles += [base + 2 * math.pi * j / order for j in range(order)]
    return torch.stack(angles, dim=-1)


def _blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (N, 1, h, w) with zero padding (background outside)."""
    if sigma <= 0:
        return x
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = F.conv2d(x, kernel.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(x, kernel.view(1, 1, -1, 1), padding=(radius, 0))


def _gradients(x: Tensor) -> Tensor:
    """(N, 1, h, w) -> (N, 3, h, w): the image and its derivatives along normalised x and y.

    Central differences; one pixel is 2 / w (resp. 2 / h) normalised units.
    """
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    gx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) * (w / 4.0)
    gy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) * (h / 4.0)
    return torch.cat([x, gx, gy], dim=1)


def _subspace(mode: str, size: tuple[int, int], like: Tensor) -> Tensor:
    """(6, k) basis M with ``delta theta.flatten() = M @ delta p`` for the fitted family."""
    h, w = size
    basis = torch.zeros(6, {"translation": 2, "similarity": 4, "affine": 6}[mode],
                        dtype=like.dtype, device=like.device)
    if mode == "affine":
        basis[:] = torch.eye(6, dtype=like.dtype, device=like.device)
    elif mode == "translation":
        basis[2, 0] = basis[5, 1] = 1.0
    else:  # inverse of a pixel-frame similarity [[a, -b], [b, a]] in normalised units
        basis[0, 0] = basis[4, 0] = 1.0
        basis[1, 1] = -h / w
        basis[3, 1] = w / h
        basis[2, 2] = basis[5, 3] = 1.0
    return basis


class _Level(NamedTuple):
    """Images of one refinement level: source with derivatives and the target."""

    source: Tensor  # (B, 3, h, w): blurred source, d/dx, d/dy (normalised units)
    target: Tensor  # (B, 1, h, w): blurred target
    coords: Tensor  # (h * w, 3): normalised output coordinates (x, y, 1)
    monomials: Tensor  # (h * w, 6): x^2, xy, y^2, x, y, 1


_BLOCK = ((0, 1, 3), (1, 2, 4), (3, 4, 5))
"""Column of ``monomials`` holding c_i c_j for c = (x, y, 1)."""


def _make_level(source: Tensor, target: Tensor, sigma: float) -> _Level:
    h, w = source.shape[-2:]
    ys, xs = torch.meshgrid(_pixel_centres(h, source), _pixel_centres(w, source), indexing="ij")
    x, y = xs.flatten(), ys.flatten()
    one = torch.ones_like(x)
    coords = torch.stack([x, y, one], dim=-1)
    monomials = torch.stack([x * x, x * y, y * y, x, y, one], dim=-1)
    return _Level(_gradients(_blur(source, sigma)), _blur(target, sigma), coords, monomials)


def _evaluate(level: _Level, theta: Tensor, with_jacobian: bool = True
              ) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Mean squared error (B,) of the warped source, and its normal equations.

    The normal equations (J^T J (B, 6, 6) and J^T r (B, 6), float64, for the 6 entries of
    ``theta``) are returned when ``with_jacobian``. J has columns (gx x, gx y, gx, gy x, gy y,
    gy), g the source gradient at the sampled point and (x, y) the output pixel; J^T J is
    assembled from the three products of g summed against six coordinate monomials, so no
    (B, N, 6) tensor is formed.
    """
    b = theta.shape[0]
    src = level.source if with_jacobian else level.source[:, :1]
    sampled = _warp(src, theta).flatten(2)  # (B, 3 or 1, N)
    residual = sampled[:, 0] - level.target.flatten(1)  # (B, N)
    cost = residual.square().mean(dim=1).to(torch.float64)
    if not with_jacobian:
        return cost, None, None
    gx, gy = sampled[:, 1], sampled[:, 2]
    products = torch.stack([gx * gx, gx * gy, gy * gy], dim=1)  # (B, 3, N)
    sums = (products @ level.monomials).to(torch.float64)  # (B, 3, 6)
    index = torch.tensor(_BLOCK, device=theta.device)
    xx, xy, yy = sums[:, 0][:, index], sums[:, 1][:, index], sums[:, 2][:, index]  # (B, 3, 3)
    jtj = torch.cat([torch.cat([xx, xy], dim=2), torch.cat([xy, yy], dim=2)], dim=1)
    jtr = (sampled[:, 1:] * residual.unsqueeze(1)) @ level.coords  # (B, 2, 3)
    return cost, jtj, jtr.reshape(b, 6).to(torch.float64)


def _refine(level: _Level, theta: Tensor, basis: Tensor, iterations: int) -> Tensor:
    """Levenberg-Marquardt on the MSE of the warped source, all pairs at once."""
    if iterations <= 0:
        return theta
    b = theta.shape[0]
    m64 = basis.to(torch.float64)
    k = m64.shape[1]
    eye = torch.eye(k, dtype=torch.float64, device=theta.device)
    cost, jtj, jtr = _evaluate(level, theta)
    assert jtj is not None and jtr is not None
    damping = torch.full((b,), 1e-3, dtype=torch.float64, device=theta.device)
    best = theta.to(torch.float64)
    for _ in range(iterations):
        hess = m64.T @ jtj @ m64  # (B, k, k)
        grad = (m64.T @ jtr.unsqueeze(-1)).squeeze(-1)  # (B, k)
        diag = torch.diagonal(hess, dim1=-2, dim2=-1)
        scale = diag.mean(dim=-1).clamp_min(1e-12)
        system = (hess + torch.diag_embed(damping.unsqueeze(-1) * diag)
                  + 1e-9 * scale.view(-1, 1, 1) * eye)
        step = torch.linalg.solve(system, -grad)
        trial = best + (m64 @ step.unsqueeze(-1)).view(b, 2, 3)
        t_cost, t_jtj, t_jtr = _evaluate(level, trial.to(theta.dtype))
        assert t_jtj is not None and t_jtr is not None
        better = t_cost < cost
        best = torch.where(better.view(b, 1, 1), trial, best)
        cost = torch.where(better, t_cost, cost)
        jtj = torch.where(better.view(b, 1, 1), t_jtj, jtj)
        jtr = torch.where(better.view(b, 1), t_jtr, jtr)
        damping = torch.where(better, damping * 0.3, damping * 10.0).clamp(1e-6, 1e6)
    return best.to(theta.dtype)


_MIN_OBJECT_SIDE = 12
"""The working level keeps sqrt(area) of the smallest mask at least this many pixels."""


def _working_factor(size: tuple[int, int], working_size: int, areas: Tensor, min_pixels: int
                    ) -> int:
    """Integer downsampling factor of the working level.

    The largest factor that keeps the frame's shorter side >= ``working_size`` and the smallest
    mask >= ``_MIN_OBJECT_SIDE`` pixels across (so that coarse fitting does not confuse the
    rotations of small objects) and that divides both H and W.
    """
    factor = max(1, min(size) // working_size)
    if areas.numel():
        side = math.sqrt(max(float(areas.min()), float(min_pixels), 1.0))
        factor = min(factor, max(1, int(side // _MIN_OBJECT_SIDE)))
    while size[0] % factor or size[1] % factor:  # exact pooling keeps the frame's geometry
        factor -= 1
    return factor


def _initial_candidates(
    src: Tensor, tgt: Tensor, mode: str
) -> Tensor:
    """Closed-form forward transforms from moments: (B, n, 2, 3) ``output_from_input``.

    In centred pixel units; several per pair where a rotation is ambiguous.
    """
    area_s, mu_s, cov_s, raw_s = _moments(src[:, 0])
    area_t, mu_t, cov_t, raw_t = _moments(tgt[:, 0])
    b = src.shape[0]
    eye = torch.eye(2, dtype=torch.float64, device=src.device).expand(b, 2, 2)
    if mode == "translation":
        lin = eye.unsqueeze(1)  # (B, 1, 2, 2)
    elif mode == "similarity":
        scale = (area_t.clamp_min(1e-12) / area_s.clamp_min(1e-12)).sqrt()
        orders = [(2, 0), (2, 1), (3, 0), (4, 0)]
        angles = _angle_candidates(raw_s, raw_t, eye, eye, orders)  # (B, n)
        lin = scale.view(b, 1, 1, 1) * _rotation(angles)
    else:
        root_t, _ = _sqrtm_spd(cov_t)
        _, inv_root_s = _sqrtm_spd(cov_s)
        _, inv_root_t = _sqrtm_spd(cov_t)
        orders = [(2, 1), (3, 0), (4, 0)]
        angles = _angle_candidates(raw_s, raw_t, inv_root_s, inv_root_t, orders)
        lin = root_t.unsqueeze(1) @ _rotation(angles) @ inv_root_s.unsqueeze(1)
    shift = mu_t.unsqueeze(1) - (lin @ mu_s.view(b, 1, 2, 1)).squeeze(-1)  # (B, n, 2)
    return torch.cat([lin, shift.unsqueeze(-1)], dim=-1)


def _pixel_to_theta(forward_pix: Tensor, size: tuple[int, int]) -> Tensor:
    """Forward pixel-frame transforms (..., 2, 3) -> normalised ``input_from_output``."""
    h, w = size
    k = forward_pix.new_tensor([w / 2.0, h / 2.0])
    lin = forward_pix[..., :2] * (k.view(2, 1).reciprocal() * k.view(1, 2))  # K^-1 A K
    shift = forward_pix[..., 2] / k
    return _invert(torch.cat([lin, shift.unsqueeze(-1)], dim=-1))


def _iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of (B, 1, H, W) {0, 1} masks, (B,); 0 where the union is empty."""
    inter = (a * b).sum(dim=(1, 2, 3))
    union = (a + b).clamp(max=1).sum(dim=(1, 2, 3))
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(union))


def fit_control(
    source: Tensor,
    target: Tensor,
    mode: str = "affine",
    iterations: int = 10,
    *,
    threshold: float = 0.5,
    min_pixels: int = 4,
    working_size: int = 64,
    final_iterations: int = 0,
) -> ControlFit:
    """Fit the transform that moves each source mask onto its target mask (pseudo control).

    All pairs are fitted at once, on the device of the masks. The masks are binarised; the
    closed-form estimate from their moments (centroids; covariance, whitened so that
    ``A = C_t^(1/2) R C_s^(-1/2)`` for ``affine``; area ratio and principal axes for
    ``similarity``) gives a few candidates per pair, one per rotation that higher complex
    moments allow; the one with the best overlap is refined by Levenberg-Marquardt on the mean
    squared error between the warped source and the target (blurred, at about
    ``working_size`` pixels, then ``final_iterations`` at full resolution).

    Args:
        source: (B, 1, H, W) masks at time t (soft masks are binarised at ``threshold``).
        target: (B, 1, H, W) masks at time t + 1.
        mode: ``"translation"``, ``"similarity"`` (rotation + uniform scale in pixel units +
            translation) or ``"affine"``.
        iterations: refinement iterations at the working resolution.
        threshold: binarisation threshold of the inputs and of the warped source for the IoU.
        min_pixels: pairs where either mask has fewer foreground pixels are not fitted:
            identity, ``valid=False``.
        working_size: the fit runs on masks area-downsampled by the largest integer factor
            that divides H and W, keeps the shorter side at or above this many pixels
            (256x256 -> 64x64) and keeps the smallest mask at least 12 pixels across.
        final_iterations: extra iterations at full resolution when the working level is
            downsampled (rarely worth their cost: the area-averaged level keeps sub-pixel
            accuracy).

    Returns:
        :class:`ControlFit` with ``theta`` (B, 2, 3) ``input_from_output`` (so
        ``warp_masks(source, theta) ~= target``), ``valid`` (B,) and ``iou`` (B,).
    """
    src = _require_masks("source", source, channels=1)
    tgt = _require_masks("target", target, channels=1)
    if src.shape != tgt.shape:
        raise ValueError(f"source and target must have the same shape, got {_describe(source)} "
                         f"and {_describe(target)}")
    if src.device != tgt.device:
        raise ValueError(f"source is on {src.device} but target is on {tgt.device}")
    if mode not in FIT_MODES:
        raise ValueError(f"mode must be one of {FIT_MODES}, got {mode!r}")
    for name, value, low in [("iterations", iterations, 0), ("min_pixels", min_pixels, 0),
                             ("working_size", working_size, 4),
                             ("final_iterations", final_iterations, 0)]:
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not isinstance(threshold, (int, float)) or not 0 <= threshold < 1:
        raise ValueError(f"threshold must be a number in [0, 1), got {threshold!r}")

    dtype = torch.float64 if src.dtype == torch.float64 else torch.float32
    src_b = (src > threshold).to(dtype)
    tgt_b = (tgt > threshold).to(dtype)
    b, _, h, w = src_b.shape
    areas = torch.minimum(src_b.sum(dim=(1, 2, 3)), tgt_b.sum(dim=(1, 2, 3)))  # (B,) pixels
    valid = areas >= max(min_pixels, 1)
    if b == 0:
        return ControlFit(identity_matrix(0, device=src.device, dtype=dtype), valid,
                          src_b.new_zeros(0))

    # closed-form candidates, (B, n, 2, 3) input_from_output
    candidates = _pixel_to_theta(_initial_candidates(src_b, tgt_b, mode), (h, w)).to(dtype)
    candidates = torch.nan_to_num(candidates)

    # coarse working level (area-averaged, so it keeps sub-pixel edge positions)
    factor = _working_factor((h, w), working_size, areas[valid], min_pixels)
    if factor > 1:  # area averaging keeps sub-pixel edge positions as grey levels
        src_w, tgt_w = F.avg_pool2d(src_b, factor), F.avg_pool2d(tgt_b, factor)
    else:
        src_w, tgt_w = src_b, tgt_b
    basis = _subspace(mode, (h, w), src_b)
    coarse = _make_level(src_w, tgt_w, sigma=1.0)

    # pick the candidate with the lowest error; near ties (symmetric shapes) go to the
    # smallest rotation, the simplest motion that explains the pair
    n = candidates.shape[1]
    if n > 1:
        rep = coarse._replace(source=coarse.source[:, :1].repeat_interleave(n, 0),
                              target=coarse.target.repeat_interleave(n, 0))
        scores, _, _ = _evaluate(rep, candidates.reshape(b * n, 2, 3), with_jacobian=False)
        turn = torch.atan2(candidates[..., 1, 0] - candidates[..., 0, 1],
                           candidates[..., 0, 0] + candidates[..., 1, 1]).abs() / math.pi
        scores = scores.view(b, n) * (1.0 + 0.02 * turn.to(scores.dtype)) + 1e-9 * turn
        choice = scores.argmin(dim=1)
        theta = candidates[torch.arange(b, device=src.device), choice]
    else:
        theta = candidates[:, 0]

    first = (iterations + 1) // 2
    theta = _refine(coarse, theta, basis, first)
    theta = _refine(_make_level(src_w, tgt_w, sigma=0.5), theta, basis, iterations - first)
    if factor > 1 and final_iterations > 0:
        theta = _refine(_make_level(src_b, tgt_b, sigma=0.7), theta, basis, final_iterations)

    identity = identity_matrix(b, device=src.device, dtype=dtype)
    ok = valid & torch.isfinite(theta).flatten(1).all(dim=1)
    theta = torch.where(ok.view(b, 1, 1), theta, identity)
    warped = (_warp(src_b, theta) > threshold).to(dtype)
    return ControlFit(theta, ok, _iou(warped, tgt_b))
