"""Losses of both training stages. Each function returns ``(loss, logs)``.

``loss`` is a scalar tensor (already weighted where the function takes a weight) and ``logs``
a dict of detached floats named without the stage prefix (``rec_loss``, ``bg_loss``...); the
loop prefixes them as ``stage1/train/<name>``. Frames are (B, 3, H, W) in [-1, 1]; masks are
(B, 1, H, W) in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Logs = dict[str, float]
LossAndLogs = tuple[torch.Tensor, Logs]


def _check_frames(name: str, *tensors: torch.Tensor) -> None:
    shape = tensors[0].shape
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} expects tensors, got {type(t)}")
        if t.dim() != 4 or t.shape != shape:
            raise ValueError(
                f"{name} expects matching (B, C, H, W) tensors, got "
                f"{[tuple(x.shape) for x in tensors]}")


def _check_masks(name: str, masks: torch.Tensor, frames: torch.Tensor | None = None) -> None:
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"{name} expects a mask tensor, got {type(masks)}")
    if masks.dim() != 4 or masks.shape[1] != 1:
        raise ValueError(f"{name} expects masks (B, 1, H, W), got {tuple(masks.shape)}")
    if frames is not None and (masks.shape[0] != frames.shape[0]
                               or masks.shape[-2:] != frames.shape[-2:]):
        raise ValueError(
            f"{name}: masks {tuple(masks.shape)} do not match frames {tuple(frames.shape)}")


def _f(x: torch.Tensor) -> float:
    return float(x.detach().float())


# ------------------------------------------------------------------------------- image terms
def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, weight: float = 1.0,
                        pixel_weight: torch.Tensor | None = None) -> LossAndLogs:
    """L1 reconstruction ``weight * mean|target - pred|`` of (B, 3, H, W) frames.

    ``pixel_weight`` (B, 1, H, W), optional, multiplies each pixel's error inside the mean (see
    :func:`motion_weights`); the logged ``rec_loss`` stays the plain L1, comparable across runs.
    """
    _check_frames("reconstruction_loss", pred, target)
    error = (target.float() - pred.float()).abs()
    rec = error.mean()
    if pixel_weight is None:
        return weight * rec, {"rec_loss": _f(rec)}
    _check_masks("reconstruction_loss", pixel_weight, pred)
    return weight * (error * pixel_weight.float()).mean(), {"rec_loss": _f(rec)}


def motion_weights(changed: torch.Tensor, extra: float) -> torch.Tensor:
    """Per-pixel L1 weights ``1 + extra * mu_t``: (B, 1, H, W) {0, 1} -> (B, 1, H, W).

    Not in the paper. Moving objects are a few percent of the pixels, so the plain L1 hardly
    pays a small model to draw them; weighting the changed pixels makes the ``small`` generator
    draw the objects far better on sprites, at a small cost on the whole frame (docs/results.md,
    "The three additions"). mu_t (:func:`changed_pixels`) needs no labels.
    """
    if extra < 0:
        raise ValueError(f"motion weight must be >= 0, got {extra!r}")
    return 1.0 + extra * changed


def vq_loss_term(vq_loss: torch.Tensor, weight: float = 1.0) -> LossAndLogs:
    """Codebook + commitment terms as returned by the quantiser (scalar), times lambda_VQ."""
    if not isinstance(vq_loss, torch.Tensor) or vq_loss.numel() != 1:
        raise ValueError(f"vq_loss must be a scalar tensor, got {vq_loss!r}")
    vq = vq_loss.float().reshape(())
    return weight * vq, {"vq_loss": _f(vq)}


def perceptual_loss(perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
                    pred: torch.Tensor, target: torch.Tensor,
                    weight: float) -> LossAndLogs:
    """VGG-16 feature distance, ``weight * mean_b d(pred, target)``; zero when weight is 0."""
    _check_frames("perceptual_loss", pred, target)
    if weight == 0:
        return pred.new_zeros((), dtype=torch.float32), {}
    if perceptual is None:
        raise ValueError("perceptual_loss: weight > 0 but no perceptual network was given")
    p = perceptual(pred.float(), target.float()).mean()
    return weight * p, {"perceptual_loss": _f(p)}


# -------------------------------------------------------------------------------- GAN terms
def generator_gan_loss(logits_fake: torch.Tensor, kind: str = "hinge") -> LossAndLogs:
    """Compute the generator's GAN loss: hinge -mean(D(fake)), vanilla softplus(-D(fake))."""
    if kind == "hinge":
        g = -logits_fake.float().mean()
    elif kind == "vanilla":
        g = F.softplus(-logits_fake.float()).mean()
    else:
        raise ValueError(f"unknown GAN loss {kind!r}; use hinge|vanilla")
    return g, {"g_loss": _f(g)}


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor,
                       kind: str = "hinge") -> LossAndLogs:
    """Discriminator loss, 0.5 (real term + fake term), hinge or vanilla (non-saturating)."""
    real, fake = logits_real.float(), logits_fake.float()
    if kind == "hinge":
        d = 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
    elif kind == "vanilla":
        d = 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())
    else:
        raise ValueError(f"unknown GAN loss {kind!r}; use hinge|vanilla")
    return d, {"d_loss": _f(d), "logits_real": _f(real.mean()), "logits_fake": _f(fake.mean())}


def adaptive_gan_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor,
                        last_layer: torch.Tensor, disc_weight: float = 1.0,
                        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
                        ) -> torch.Tensor:
    """VQGAN's adaptive weight ``||grad rec|| / (||grad gan|| + 1e-4)``, clamped, x disc_weight.

    Both gradients are taken with respect to ``last_layer`` (the decoder's final conv weight)
    and the ratio is clamped to [0, 1e4] before the multiplication; the result is detached.
    ``reduce`` (e.g. an all-reduce mean across processes) is applied to both gradients first, so
    that data-parallel runs use the gradient of the global batch.
    """
    if not last_layer.requires_grad:
        raise ValueError("adaptive_gan_weight: last_layer does not require grad")
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    if reduce is not None:
        rec_grad, gan_grad = reduce(rec_grad), reduce(gan_grad)
    weight = rec_grad.norm() / (gan_grad.norm() + 1e-4)
    return (torch.clamp(weight, 0.0, 1e4) * disc_weight).detach()


# ------------------------------------------------------------------------------- mask terms
def background_loss(masks: torch.Tensor, frame: torch.Tensor, next_frame: torch.Tensor,
                    weight: float = 1.0) -> LossAndLogs:
    """L_bg = mean |(1 - m_t) f_t - (1 - m_t) f_{t+1}|: the background must not change."""
    return _background_l1("background_loss", "bg_loss", masks, frame, next_frame, weight)


def pair_union(masks: torch.Tensor, next_masks: torch.Tensor) -> torch.Tensor:
    """Soft union 1 - (1 - m_t)(1 - m_{t+1}) of two (B, 1, H, W) masks (``bg_mask="pair_union"``).

    Equal to max(m_t, m_{t+1}) on {0, 1} masks, with a gradient to both. With it in L_bg and
    L_fg instead of m_t alone, each frame's mask only has to cover its own frame's objects: the
    pixels an object moves into are covered by the next frame's mask.
    """
    _check_masks("pair_union", masks)
    _check_masks("pair_union (next)", next_masks, masks)
    return 1.0 - (1.0 - masks.float()) * (1.0 - next_masks.float())


def stage2_background_loss(masks: torch.Tensor, pred: torch.Tensor, next_frame: torch.Tensor,
                           weight: float = 1.0) -> LossAndLogs:
    """L'_bg = mean |(1 - m_t) f~_{t+1} - (1 - m_t) f_{t+1}| (stage II, m_t binarised)."""
    return _background_l1("stage2_background_loss", "bg2_loss", masks, pred, next_frame, weight)


def _background_l1(name: str, log: str, masks: torch.Tensor, frame: torch.Tensor,
                   next_frame: torch.Tensor, weight: float) -> LossAndLogs:
    """``weight`` x mean |(1 - m) (frame - next_frame)|, logged as ``log``.

    ``name`` is the public loss, for the messages of its shape checks.
    """
    _check_frames(name, frame, next_frame)
    _check_masks(name, masks, frame)
    bg = ((1.0 - masks.float()) * (frame.float() - next_frame.float())).abs().mean()
    return weight * bg, {log: _f(bg)}


def changed_pixels(frame: torch.Tensor, next_frame: torch.Tensor, tau: float,
                   diff: str = "rgb_l1") -> torch.Tensor:
    """mu_t: 1 where the frame visibly changed, (B, 3, H, W) x 2 -> (B, 1, H, W) in {0, 1}.

    ``diff="rgb_l1"``: mean over channels of |f_{t+1} - f_t| > tau; ``"luma"``: |Y_{t+1} - Y_t| >
    tau with Y = 0.299 R + 0.587 G + 0.114 B (the released code's choice, tau 0.04).
    """
    _check_frames("changed_pixels", frame, next_frame)
    d = next_frame.float() - frame.float()
    if diff == "rgb_l1":
        delta = d.abs().mean(1, keepdim=True)
    elif diff == "luma":
        w = torch.tensor([0.299, 0.587, 0.114], device=d.device).view(1, 3, 1, 1)
        delta = (d * w).sum(1, keepdim=True).abs()
    else:
        raise ValueError(f"unknown frame difference {diff!r}; use rgb_l1|luma")
    return (delta > tau).float()


def size_prior_loss(masks: torch.Tensor, prior: torch.Tensor | float, weight: float = 1.0,
                    hinge: bool = False) -> LossAndLogs:
    """L_fg = mean_b |mean(m_t) - mean(mu_t)| with a per-pair (dynamic) or fixed prior.

    ``prior`` is mu_t (B, 1, H, W) (dynamic prior) or a float fraction (fixed prior, the
    paper's ablation). ``hinge=True`` uses the released code's one-sided max(mean(m) - mean(mu),
    0): the mask may be smaller than the changed region but not larger.
    """
    _check_masks("size_prior_loss", masks)
    size = masks.float().mean((1, 2, 3))  # (B,)
    if isinstance(prior, torch.Tensor):
        _check_masks("size_prior_loss (prior)", prior, masks)
        target = prior.float().mean((1, 2, 3))
    else:
        target = torch.full_like(size, float(prior))
    gap = size - target
    fg = (F.relu(gap) if hinge else gap.abs()).mean()
    logs = {"fg_loss": _f(fg), "mask_size": _f(size.mean()), "prior_size": _f(target.mean())}
    return weight * fg, logs


def binarization_loss(masks: torch.Tensor, weight: float = 1.0) -> LossAndLogs:
    """L_bin = mean(min(m, 1 - m)): zero for a 0/1 mask, largest (0.5) for m = 0.5."""
    _check_masks("binarization_loss", masks)
    b = torch.minimum(masks.float(), 1.0 - masks.float()).mean()
    return weight * b, {"bin_loss": _f(b)}
