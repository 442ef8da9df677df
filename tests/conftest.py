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
