"""mmcv 1.7.2's runner hooks, imported as a test oracle (a dev dependency, pure Python).

mmcv is installed without its C++/CUDA ops (``MMCV_WITH_OPS=0``, see .ci/run). Its
``mmcv.runner`` package imports torchvision at the top of ``runner/checkpoint.py``
only to list torchvision's model URLs for ``torchvision://`` checkpoints, which the
oracle never loads; torchvision is not a dependency of ours (its wheels are pinned to
one torch build each). When it is not installed, an empty placeholder module stands in
for it during that import and is removed again, so no other code can see it.

(A plain module imported by path, like tests/strategies.py.)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings
from types import ModuleType

__all__ = ["mmcv_runner"]


def mmcv_runner() -> ModuleType:
    """``mmcv.runner``, imported once (its hooks, ``HOOKS`` and optimizer hooks)."""
    cached = sys.modules.get("mmcv.runner")
    if cached is not None:
        return cached
    placeholder = None
    if importlib.util.find_spec("torchvision") is None:
        placeholder = types.ModuleType("torchvision")
        sys.modules["torchvision"] = placeholder
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mmcv's own deprecation notices on import
            return importlib.import_module("mmcv.runner")
    finally:
        if placeholder is not None and sys.modules.get("torchvision") is placeholder:
            del sys.modules["torchvision"]
