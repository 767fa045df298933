"""Fixtures shared by every test package, and the hypothesis profiles of the property tests."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Property tests (tests/*/test_properties.py) stay within seconds in the default suite ("quick",
# the same examples every run); LCVG_HYPOTHESIS_PROFILE=thorough searches many more.
_PROFILE = {"deadline": None, "database": None,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("quick", max_examples=15, derandomize=True, **_PROFILE)
settings.register_profile("thorough", max_examples=400, **_PROFILE)
settings.load_profile(os.environ.get("LCVG_HYPOTHESIS_PROFILE", "quick"))


@pytest.fixture
def one_thread():
    """Run a test on one torch thread, restoring the previous count afterwards.

    These tests check behaviour, not speed. Tiny models run fastest on one thread, and on a
    shared 2-core machine two OpenMP threads wait on each other whenever another process holds
    a core (10x slower than one thread).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
