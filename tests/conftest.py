"""Shared pytest configuration: fixtures live in plugin modules registered here.

Without CUDA, Triton kernels (the tests marked ``triton``) run in Triton's CPU interpreter. Triton
reads ``TRITON_INTERPRET`` when ``triton.language`` is imported, which Lightning's import already
does, so it is set here, before any test module imports anything.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest_plugins = ["tests.data_fixtures", "tests.recipe_helpers"]


@pytest.fixture(scope="session", autouse=True)
def light_gru_cpp_loops():
    """Build the Light GRU's C++ loops first (once per machine, about half a minute), so that no
    test's subprocess pays for the build under its time limit."""
    from rnnlib.ligru import cpp_loops  # (after TRITON_INTERPRET is set above)

    cpp_loops.extension()
