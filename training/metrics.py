"""Image and control metrics against ground truth (frames in [-1, 1], masks in {0, 1})."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _check_pair(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError(f"{name} expects tensors, got {type(a)} and {type(b)}")
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(
            f"{name} expects two (B, C, H, W) tensors of one shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}")


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB of frames (B, C, H, W) in [-1, 1] (peak 1 after mapping to [0, 1]).

    Identical frames give +inf.
    """
    _check_pair("psnr", pred, target)
    p = (pred.float().clamp(-1, 1) + 1) / 2
    t = (target.float().clamp(-1, 1) + 1) / 2
    mse = (p - t).pow(2).mean((1, 2, 3))
    return 10.0 * torch.log10(1.0 / mse)


def _gaussian_window(size: int, sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    window = g[:, None] * g[None, :]  # (size, size)
    return window.expand(channels, 1, size, size).contiguous()


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Per-sample SSIM (Wang et al. 2004; Gaussian 11x11, sigma 1.5) of (B, C, H, W) frames.

    Frames in [-1, 1] are mapped to [0, 1]; constants C1 = 0.01^2, C2 = 0.03^2; the map is
    computed on the valid region (no padding) and averaged over channels and pixels. Frames
    smaller than the window use a window of their size.
    """
    _check_pair("ssim", pred, target)
    x = (pred.float().clamp(-1, 1) + 1) / 2
    y = (target.float().clamp(-1, 1) + 1) / 2
    size = min(window, x.shape[-1], x.shape[-2])
    w = _gaussian_window(size, sigma, x.shape[1], x.device)
    groups = x.shape[1]

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, w, groups=groups)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x ** 2
    syy = blur(y * y) - mu_y ** 2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2)
    return (num / den).mean((1, 2, 3))


def mask_iou(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per-sample IoU of masks (B, 1, H, W) thresholded at ``threshold``; two empty masks -> 1."""
    _check_pair("mask_iou", pred, target)
    p = pred > threshold
    t = target > threshold
    inter = (p & t).flatten(1).sum(1).float()
    union = (p | t).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def position_errors(pred: torch.Tensor, target: torch.Tensor, width: int) -> torch.Tensor:
    """Euclidean distances between positions (..., 2) in pixels, divided by the image width.

    NaN wherever either position is NaN (object out of view or not found).
    """
    if pred.shape != target.shape or pred.shape[-1] != 2:
        raise ValueError(
            f"position_errors expects (..., 2) tensors of one shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}")
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return (pred.float() - target.float()).norm(dim=-1) / float(width)


def rmse(errors: torch.Tensor) -> float:
    """sqrt(mean(e^2)) over the finite entries of ``errors`` (NaN when there are none)."""
    finite = errors[torch.isfinite(errors)]
    if finite.numel() == 0:
        return math.nan
    return float(finite.float().pow(2).mean().sqrt())


def median_and_gross_rate(errors: torch.Tensor, gross: float) -> tuple[float, float]:
    """Median of the finite entries of ``errors``, and the fraction of them above ``gross``.

    The RMSE is dominated by a few large errors (an object that swapped colour with another it
    overlapped, a lost object); these two say whether the typical error is small and how often
    it is not. Both NaN when there is no finite entry.
    """
    finite = errors[torch.isfinite(errors)].float()
    if finite.numel() == 0:
        return math.nan, math.nan
    median = torch.quantile(finite, 0.5)  # the midpoint for an even count, like numpy's
    return float(median), float((finite > gross).float().mean())


def position_rmse(pred: torch.Tensor, target: torch.Tensor, width: int) -> float:
    """RMSE of positions (..., 2) in units of image width, ignoring NaN entries."""
    return rmse(position_errors(pred, target, width))
