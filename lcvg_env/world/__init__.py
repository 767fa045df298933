"""The sprites world with true dynamics: scenes, their rendering, and twin environments.

``lcvg_env.world.scene`` samples sprites scenes and renders them with any object poses (the
training clips of ``training.data.sprites`` use it too); ``lcvg_env.world.twin`` is
``SpritesRealEnv``, the real world beside the learned ``lcvg_env.env.LCVGEnv`` (same spaces,
tasks and infos); ``lcvg_env.world.pairing.paired_reset`` starts a learned and a twin
environment from the same frame with their objects matched.
"""

import importlib

from lcvg_env.world import scene
from lcvg_env.world.scene import *  # noqa: F403  (re-exports scene.__all__, listed there once)

_LAZY = {"SpritesRealEnv": "lcvg_env.world.twin", "paired_reset": "lcvg_env.world.pairing"}
"""Names imported only when asked for (the twin needs gymnasium and torch): name -> module."""

__all__ = [*scene.__all__, *_LAZY]


def __getattr__(name: str) -> object:
    """Import the twin environment (gymnasium, torch) only when it is asked for."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lcvg_env.world' has no attribute {name!r}")
