"""Perceptual loss on ImageNet VGG-16 features, with explicit weight loading (no downloads).

The weights are looked up, in order, at: the ``path`` argument (``--perceptual-weights``), the
``$LCVG_VGG16_WEIGHTS`` environment variable, and the torch hub cache
(``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``, the file torchvision downloads). A state dict
of the full torchvision ``vgg16`` or of its ``features`` part alone is accepted. Nothing is
downloaded, and random weights are never used in their place: :func:`find_vgg16_weights` raises
with a message listing every place it looked.

The distance is the LPIPS recipe without its learned linear heads (those are not in the ImageNet
checkpoint): features at relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3, each unit-normalised
over channels, squared differences averaged over space and summed over channels and layers.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

VGG16_FILENAME = "vgg16-397923af.pth"
# Indices in torchvision's vgg16().features after which the LPIPS taps sit (relu1_2 ... relu5_3).
_TAPS = (3, 8, 15, 22, 29)
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def vgg16_search_paths(path: str | os.PathLike | None = None) -> list[Path]:
    """Return the candidate weight files in lookup order (see the module docstring)."""
    out: list[Path] = []
    if path:
        out.append(Path(path).expanduser())
    env = os.environ.get("LCVG_VGG16_WEIGHTS")
    if env:
        out.append(Path(env).expanduser())
    out.append(Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILENAME)
    return out


def find_vgg16_weights(path: str | os.PathLike | None = None) -> Path:
    """Return the first existing VGG-16 weight file, or raise FileNotFoundError saying where."""
    candidates = vgg16_search_paths(path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = "\n  ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        "perceptual_weight > 0 needs ImageNet VGG-16 weights, and none were found. Looked at:\n  "
        f"{looked}\nPut torchvision's {VGG16_FILENAME} in one of these places (e.g. the torch hub "
        "cache), pass --perceptual-weights PATH, set LCVG_VGG16_WEIGHTS, or train with "
        "--perceptual-weight 0.")


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for item in _CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            channels = int(item)
    return nn.Sequential(*layers)


class VGG16Perceptual(nn.Module):
    """Frozen VGG-16 feature distance between two frame batches in [-1, 1].

    ``forward(x, y)`` with x, y (B, 3, H, W) returns the per-sample distance (B,).
    """

    def __init__(self, state_dict: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.features = _vgg16_features()
        own = self.features.state_dict()
        feats = {k[len("features."):]: v for k, v in state_dict.items()
                 if k.startswith("features.")}
        if not feats:
            feats = dict(state_dict)
        missing = sorted(set(own) - set(feats))
        unexpected = sorted(set(feats) - set(own))
        wrong = sorted(k for k in set(own) & set(feats) if own[k].shape != feats[k].shape)
        if missing or unexpected or wrong:
            raise ValueError(
                f"not a VGG-16 state dict: missing {missing}, unexpected {unexpected}, "
                f"wrong shapes {wrong}")
        self.features.load_state_dict(feats, strict=True)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(cls, path: str | os.PathLike | None = None) -> VGG16Perceptual:
        """Load weights found by :func:`find_vgg16_weights` (raises when there are none)."""
        found = find_vgg16_weights(path)
        state = torch.load(found, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{found} does not hold a state dict (got {type(state)})")
        return cls(state)

    def train(self, mode: bool = True) -> VGG16Perceptual:
        """Stay in eval mode whatever the caller asks (the network is a fixed metric)."""
        return super().train(False)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1.0) * 0.5 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x)
            if i >= _TAPS[-1]:
                break
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distance (B,) between frames x and y, both (B, 3, H, W) in [-1, 1]."""
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"expected two (B, 3, H, W) batches, got {tuple(x.shape)} and {tuple(y.shape)}")
        total = x.new_zeros(x.shape[0])
        for fx, fy in zip(self._taps(x), self._taps(y)):
            fx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + (fx - fy).pow(2).sum(1).mean((1, 2))
        return total
