"""Session-wide test settings shared by every level (unit, property, e2e)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI machines are shared and noisy: no per-example deadlines; a bounded example count.
settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The config loader's disk cache goes to a directory of this test session (inherited by
# every subprocess a test starts), never to the user's ~/.cache.
if "TRACKCFG_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["TRACKCFG_CACHE_DIR"] = tempfile.mkdtemp(prefix="trackcfg-test-cache-")

# One torch intra-op thread per process, here and in every subprocess a test starts: two
# xdist workers and their training subprocesses share CI's two cores, and torch's OpenMP
# threads spin-wait against each other (a tiny run then takes many times longer). Runs a
# test compares were always made with the same setting (`tests/e2e/conftest.py: run_env`).
os.environ.setdefault("OMP_NUM_THREADS", "1")
