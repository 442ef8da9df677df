"""Config engine benchmark: trackcfg vs mmengine (when installed), measured in the same run.

Prints, for deep OpenMMLab-style trees (the detection tree: 7 files, 4 levels of
`_base_`, 300+ keys; the segmentation tree: 8 files mixing .py/.json/.yaml):

* per-load time of ``Config.fromfile`` (trackcfg always records provenance, lineage
  and file digests) and the hash;
* ``pretty_text`` time (mmengine formats with yapf);
* a cold ``python -c "import trackcfg"`` and a whole process loading one config.

Targets (issue 2): load >= 5x faster than mmengine, pretty_text >= 50x faster,
``import trackcfg`` < 100 ms.

Run: ``python tests/benchmarks/bench_config.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TREES = ROOT / "tests" / "data" / "configs" / "openmmlab"
CONFIGS = {
    "det (7 files, 4 levels)": TREES / "det/faster_rcnn/faster-rcnn_x101-64x4d_fpn_ms-3x_coco.py",
    "seg (8 files, py/json/yaml)": TREES / "seg/exp/deeplabv3_r101_4xb2-80k_ade.py",
}


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds per call over ``repeat`` calls, after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# Fresh interpreters get a bytecode cache outside the work tree, as an installed package
# has: with PYTHONDONTWRITEBYTECODE (set in some dev shells) every process would compile
# trackcfg's sources again while mmengine's site-packages .pyc files are used.
_PYCACHE = tempfile.mkdtemp(prefix="bench_config_pycache_")
atexit.register(shutil.rmtree, _PYCACHE, True)
_ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "PYTHONPYCACHEPREFIX": _PYCACHE,
}


def process_time(code: str, repeat: int = 15) -> float:
    """Fastest wall time of a fresh interpreter running ``code`` (after one warm-up).

    The fastest of many: on a shared machine the median mostly measures other load.
    """
    times = []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=_ENV)
        times.append(time.perf_counter() - start)
    return min(times[1:])


def count_keys(value: object) -> int:
    if isinstance(value, dict):
        return len(value) + sum(count_keys(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(count_keys(v) for v in value)
    return 0


def row(name: str, ours: float, theirs: float | None, target: str = "") -> None:
    if theirs is None:
        print(f"  {name:<28} trackcfg {ours * 1e3:8.2f} ms")
        return
    print(
        f"  {name:<28} trackcfg {ours * 1e3:8.2f} ms   mmengine {theirs * 1e3:8.2f} ms"
        f"   ratio {theirs / ours:6.1f}x {target}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    from trackcfg.config.config import Config

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mmengine.config import Config as MMConfig
    except ImportError:
        MMConfig = None  # a class, when present

    print(f"python {sys.version.split()[0]}, repeat {args.repeat}")
    for label, path in CONFIGS.items():
        cfg = Config.fromfile(path)
        print(f"{label}: {path.relative_to(ROOT)}")
        print(f"  files {len(cfg.lineage)}, keys {count_keys(cfg.to_dict())}, hash {cfg.hash}")
        ours_load = best_of(lambda p=path: Config.fromfile(p), args.repeat)
        ours_hash = best_of(lambda p=path: Config.fromfile(p).hash, args.repeat)
        ours_pretty = best_of(lambda c=cfg: c.pretty_text, args.repeat)
        theirs_load = theirs_pretty = None
        if MMConfig is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs_load = best_of(lambda p=path: MMConfig.fromfile(str(p)), args.repeat)
                mm_cfg = MMConfig.fromfile(str(path))
                theirs_pretty = best_of(lambda c=mm_cfg: c.pretty_text, max(3, args.repeat // 5))
        row("load (with provenance)", ours_load, theirs_load, "(target >= 5x)")
        row("load + hash", ours_hash, theirs_load)
        row("pretty_text", ours_pretty, theirs_pretty, "(target >= 50x)")

    print("processes (fastest of 15):")
    baseline = process_time("pass")
    ours_import = process_time("import trackcfg")
    print(f"  {'python -c pass':<28} {baseline * 1e3:8.1f} ms")
    print(
        f"  {'import trackcfg':<28} {ours_import * 1e3:8.1f} ms"
        f"  (+{(ours_import - baseline) * 1e3:.1f} ms over bare python; target < 100 ms)"
    )
    det = CONFIGS["det (7 files, 4 levels)"]
    ours_proc = process_time(f"import trackcfg; trackcfg.Config.fromfile({str(det)!r}).hash")
    if MMConfig is not None:
        theirs_import = process_time("from mmengine.config import Config")
        theirs_proc = process_time(
            f"from mmengine.config import Config; Config.fromfile({str(det)!r})"
        )
        row("import (whole process)", ours_import, theirs_import)
        row("process loading det", ours_proc, theirs_proc)
    else:
        row("process loading det", ours_proc, None)


if __name__ == "__main__":
    main()
