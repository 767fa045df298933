"""Reuse the environment tests' tiny checkpoint fixtures."""

from tests.lcvg_env.conftest import sprites_kwargs, tiny  # noqa: F401
