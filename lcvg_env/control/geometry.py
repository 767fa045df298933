"""Coordinates and affine matrices: conversions, identity, inverse, composition, parameters.

Conventions are those of ``lcvg_env.control`` (the package docstring): normalised ``(x, y)``
with ``align_corners=False``, ``input_from_output`` matrices of shape (B, 2, 3), and forward
motion parameters in :data:`PARAM_NAMES` order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lcvg_env.control.checks import (
    _describe,
    _require_finite,
    _require_float,
    _require_points,
    _require_size,
    _require_tensor,
    _require_theta,
)

PARAM_NAMES: tuple[str, ...] = ("dx", "dy", "rotation", "log_scale_x", "log_scale_y", "shear")
"""Names of the columns of a ``(B, 6)`` parameter tensor, in order (see ``lcvg_env.control``)."""


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


def _pixel_centres(n: int, like: Tensor) -> Tensor:
    """(n,) normalised centres of n pixels along one axis (``align_corners=False``)."""
    return (2.0 * torch.arange(n, device=like.device, dtype=like.dtype) + 1.0) / n - 1.0
