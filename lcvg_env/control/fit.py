"""Fitting the affine control that moves each source mask onto its target (:func:`fit_control`).

A closed-form start from the masks' moments (a few candidates where a rotation is ambiguous),
the best candidate by overlap, then Levenberg-Marquardt on the mean squared error of the warped
source, all pairs at once. The result is an ``input_from_output`` matrix, as everywhere in
``lcvg_env.control``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lcvg_env.control.checks import _describe, _require_masks
from lcvg_env.control.geometry import _invert, _pixel_centres, identity_matrix
from lcvg_env.control.warp import _warp

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


def _check_fit_args(source: Tensor, target: Tensor, mode: str, threshold: float, *,
                    iterations: int, min_pixels: int, working_size: int,
                    final_iterations: int) -> tuple[Tensor, Tensor]:
    """Validate :func:`fit_control`'s arguments; returns the source and target mask tensors.

    Errors name what was received.
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
    return src, tgt


def _best_candidate(coarse: _Level, candidates: Tensor) -> Tensor:
    """Pick each pair's (B, 2, 3) candidate with the lowest error on the ``coarse`` level.

    ``candidates`` are (B, n, 2, 3) ``input_from_output``. Near ties (symmetric shapes) go to
    the smallest rotation, the simplest motion that explains the pair.
    """
    b, n = candidates.shape[:2]
    if n == 1:
        return candidates[:, 0]
    rep = coarse._replace(source=coarse.source[:, :1].repeat_interleave(n, 0),
                          target=coarse.target.repeat_interleave(n, 0))
    scores, _, _ = _evaluate(rep, candidates.reshape(b * n, 2, 3), with_jacobian=False)
    turn = torch.atan2(candidates[..., 1, 0] - candidates[..., 0, 1],
                       candidates[..., 0, 0] + candidates[..., 1, 1]).abs() / math.pi
    scores = scores.view(b, n) * (1.0 + 0.02 * turn.to(scores.dtype)) + 1e-9 * turn
    choice = scores.argmin(dim=1)
    return candidates[torch.arange(b, device=candidates.device), choice]


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
    src, tgt = _check_fit_args(source, target, mode, threshold, iterations=iterations,
                               min_pixels=min_pixels, working_size=working_size,
                               final_iterations=final_iterations)
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

    theta = _best_candidate(coarse, candidates)
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
