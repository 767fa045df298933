"""Fixtures shared by every test package."""

import pytest
import torch


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
