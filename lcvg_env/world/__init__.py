"""The sprites world with true dynamics: scenes, their rendering, and twin environments.

``lcvg_env.world.scene`` samples sprites scenes and renders them with any object poses (the
training clips of ``training.data.sprites`` use it too); ``lcvg_env.world.twin`` is
``SpritesRealEnv``, the real world beside the learned ``lcvg_env.env.LCVGEnv`` (same spaces,
tasks and infos); ``lcvg_env.world.pairing.paired_reset`` starts a learned and a twin
environment from the same frame with their objects matched.
"""

from lcvg_env.world.scene import (
    BACKGROUND_FAMILIES,
    CLASSIC_SHAPES,
    CLASSIC_TEXTURES,
    KEY_COLORS,
    MAX_OBJECTS,
    STYLES,
    VARIED_SHAPES,
    VARIED_TEXTURES,
    Poses,
    Rendered,
    Scene,
    SceneConfig,
    render,
    render_background,
    sample_scene,
    shape_sdf,
)

__all__ = [
    "BACKGROUND_FAMILIES",
    "CLASSIC_SHAPES",
    "CLASSIC_TEXTURES",
    "KEY_COLORS",
    "MAX_OBJECTS",
    "STYLES",
    "VARIED_SHAPES",
    "VARIED_TEXTURES",
    "Poses",
    "Rendered",
    "Scene",
    "SceneConfig",
    "SpritesRealEnv",
    "paired_reset",
    "render",
    "render_background",
    "sample_scene",
    "shape_sdf",
]


def __getattr__(name: str) -> object:
    """Import the twin environment (gymnasium, torch) only when it is asked for."""
    if name == "SpritesRealEnv":
        from lcvg_env.world.twin import SpritesRealEnv

        return SpritesRealEnv
    if name == "paired_reset":
        from lcvg_env.world.pairing import paired_reset

        return paired_reset
    raise AttributeError(f"module 'lcvg_env.world' has no attribute {name!r}")
