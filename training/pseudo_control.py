"""Stage II pseudo controls: the mask of f_{t+1} seen as an edit of the mask of f_t.

A thin, caching layer over :func:`lcvg_env.control.fit_control` (convention there: normalised
coordinates, ``theta`` maps output to input coordinates, ``warp_masks(m_t, theta) ~= m_{t+1}``).

* ``fitted_affine`` (the paper): theta^_t = argmin |m_{t+1} - T(m_t, theta)| with a full affine
  theta, fitted in one batch on the training device; control mask = binarise(T(m_t, theta^_t)).
* ``fitted_translation``: the same with a translation only.
* ``future_mask`` (the released code): control mask = binarise(M(f_{t+1})).

Because M is frozen in stage II and the pairs do not change (no augmentation), the fitted theta
of a pair is cached by its dataset index; the cache travels in the checkpoint so that a resumed
run sees the same controls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from lcvg_env import control

MaskFn = Callable[[torch.Tensor], torch.Tensor]


class PseudoBatch(NamedTuple):
    """What :meth:`PseudoControl.fit` returns."""

    m_t: torch.Tensor
    """(B, 1, H, W) binarised M(f_t)."""
    m_c: torch.Tensor
    """(B, 1, H, W) the control mask: m_t's objects moved by their fitted transforms."""
    parts: torch.Tensor | None
    """(B, K, H, W) the objects of m_t that were fitted (m_t itself, K = 1, for one transform
    for the whole mask); None for ``future_mask``."""
    theta: torch.Tensor | None
    """(B, K, 2, 3) their ``input_from_output`` transforms; None for ``future_mask``."""
    rest: torch.Tensor
    """(B, 1, H, W) foreground of m_t beyond the fitted objects (it stays in place)."""
    logs: dict[str, float]
    """Fit statistics for the training logs."""


def _fit(source: torch.Tensor, target: torch.Tensor, mode: str, iterations: int) -> Any:
    return control.fit_control(source, target, mode=mode, iterations=iterations)


class PseudoControl:
    """Computes stage II control masks for a batch of pairs, with a per-index fit cache."""

    def __init__(self, source: str = "fitted_affine", iterations: int = 16,
                 cache: bool = True, objects: int = 0) -> None:
        modes = {"fitted_affine": "affine", "fitted_translation": "translation",
                 "future_mask": None}
        if source not in modes:
            raise ValueError(f"unknown control source {source!r}; use one of {sorted(modes)}")
        self.source = source
        self.mode = modes[source]
        self.iterations = iterations
        self.use_cache = cache
        if objects < 0:
            raise ValueError(f"objects must be >= 0, got {objects}")
        self.objects = objects
        self.cache: dict[int, torch.Tensor] = {}

    def __call__(self, mask_fn: MaskFn, frame: torch.Tensor, next_frame: torch.Tensor,
                 index: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """Return (m_t, m_c, logs) for frames (B, 3, H, W): binarised masks (B, 1, H, W).

        ``mask_fn`` is the frozen mask network (soft masks); ``index`` (B,) the dataset
        indices of the pairs (the cache key; no caching when None).
        """
        fit = self.fit(mask_fn, frame, next_frame, index)
        return fit.m_t, fit.m_c, fit.logs

    @torch.no_grad()
    def fit(self, mask_fn: MaskFn, frame: torch.Tensor, next_frame: torch.Tensor,
            index: torch.Tensor | None = None) -> PseudoBatch:
        """Return the pseudo control of a batch, with the per-object parts and transforms behind it.

        Arguments as for ``__call__``. For ``future_mask`` there are no transforms (``parts``
        and ``theta`` are None).
        """
        if frame.shape != next_frame.shape or frame.dim() != 4:
            raise ValueError(
                f"expected two (B, 3, H, W) batches, got {tuple(frame.shape)} and "
                f"{tuple(next_frame.shape)}")
        m_t = control.binarize(mask_fn(frame).float())
        if self.mode is None:
            m_c = control.binarize(mask_fn(next_frame).float())
            return PseudoBatch(m_t, m_c, None, None, m_t.new_zeros(m_t.shape), {})
        keys = index.tolist() if (index is not None and self.use_cache) else None
        theta = frame.new_zeros(frame.shape[0], 2, 3, dtype=torch.float32)
        todo = list(range(frame.shape[0]))
        if keys is not None:
            todo = [i for i, key in enumerate(keys) if key not in self.cache]
        logs: dict[str, float] = {"fit_cache_hits": float(frame.shape[0] - len(todo))}
        k = max(self.objects, 1)
        theta = theta.unsqueeze(1).repeat(1, k, 1, 1)  # (B, K, 2, 3)
        if keys is not None:
            for i, key in enumerate(keys):
                if key in self.cache:
                    theta[i] = self.cache[key].to(theta.device).view(k, 2, 3)
        if todo:
            sel = torch.tensor(todo, device=frame.device)
            m_next = control.binarize(mask_fn(next_frame[sel]).float())
            if self.objects:
                fitted, iou = self._fit_objects(m_t[sel], m_next)
            else:
                fit = _fit(m_t[sel], m_next, self.mode, self.iterations)
                fitted, iou = fit.theta.float().unsqueeze(1), fit.iou.float()
            theta[sel] = fitted.to(theta.device)
            logs["fit_iou"] = float(iou.mean())
            if keys is not None:
                for j, i in enumerate(todo):
                    self.cache[keys[i]] = fitted[j].detach().float().cpu().view(k, 2, 3)
        if self.objects:
            parts = control.object_masks(m_t, k)  # (B, K, H, W)
            rest = (m_t - parts.sum(1, keepdim=True)).clamp(0, 1)  # beyond the K largest
            m_c = torch.maximum(control.warp_objects(parts, theta), rest)
        else:
            parts, rest = m_t, torch.zeros_like(m_t)
            m_c = control.binarize(control.warp_masks(m_t, theta[:, 0]))
        return PseudoBatch(m_t, m_c, parts, theta, rest, logs)

    def _fit_objects(self, m_t: torch.Tensor, m_next: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """One transform per connected component: (B, 1, H, W) x 2 -> (B, K, 2, 3), iou (B, K).

        Each of the K largest components of m_t is matched to the component of m_{t+1} with
        the nearest centroid and fitted to it; missing components get the identity.
        """
        k = self.objects
        b, _, h, w = m_t.shape
        src = control.object_masks(m_t, k)  # (B, K, H, W)
        tgt = control.object_masks(m_next, k)
        c_src = control.mask_centroids(src)  # (B, K, 2)
        c_tgt = control.mask_centroids(tgt)
        empty_t = tgt.sum((2, 3)) == 0  # (B, K)
        dist = (c_src[:, :, None] - c_tgt[:, None]).norm(dim=-1)  # (B, K, K)
        dist = dist.masked_fill(empty_t[:, None], float("inf"))
        match = dist.argmin(-1)  # (B, K)
        matched = tgt.gather(1, match[..., None, None].expand(b, k, h, w))
        fit = _fit(src.reshape(b * k, 1, h, w), matched.reshape(b * k, 1, h, w), self.mode,
                   self.iterations)
        iou = fit.iou.float().view(b, k)
        valid = fit.valid.view(b, k)
        return fit.theta.float().view(b, k, 2, 3), torch.where(valid, iou, torch.ones_like(iou))

    def state_dict(self) -> dict[str, Any]:
        """Return the fit cache as two tensors (indices (N,), thetas (N, K, 2, 3)), K >= 1."""
        if not self.cache:
            return {"indices": torch.zeros(0, dtype=torch.long),
                    "thetas": torch.zeros(0, max(self.objects, 1), 2, 3)}
        keys = sorted(self.cache)
        return {"indices": torch.tensor(keys, dtype=torch.long),
                "thetas": torch.stack([self.cache[k] for k in keys])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the cache written by :meth:`state_dict`."""
        indices, thetas = state["indices"], state["thetas"]
        self.cache = {int(k): thetas[i].clone() for i, k in enumerate(indices.tolist())}
