"""Benchmark: `trackcfg hash` on a deep config, as a whole process, vs mmengine loading it.

Run: ``python tests/benchmarks/bench_cli.py [--repeat 15]``. Prints median wall
times, median CPU times (user + system: steadier than wall time on a shared
machine) and ratios; exits 1 when `trackcfg hash` misses its 0.15 s target or pulls
in torch/mlflow. Not collected by pytest (the file name starts with ``bench_``).

The deep config is generated in a temp dir: a chain of ``--depth`` files, each
inheriting the previous one plus two side bases, overriding a dict with
``_delete_``, substituting ``{{ _base_.x }}`` and adding nested keys; the
repository's ``configs/digits/mlp_sgd_20e.py`` and the OpenMMLab detection tree of
``tests/data`` are measured too. Both tools load the same files; mmengine is told
not to import ``custom_imports`` either.

`trackcfg hash` runs with its disk store warm (the warm-up run fills it: a second
run over the same files, issue 16 item 6) and with ``TRACKCFG_CACHE=off``. Every
process gets a bytecode cache outside the work tree (mmengine's site-packages have
theirs) and a disk store of its own. A whole process cannot be faster than Python's
start plus importing the CLI: the best ratio that floor allows is printed too.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET_S = 0.15


def write_deep_config(directory: Path, depth: int) -> Path:
    """A ``depth``-level inheritance chain with side bases; returns the leaf config."""
    for level in range(depth):
        side = directory / f"side_{level}.py"
        side.write_text(
            f"side_{level} = dict(a={level}, b=[{level}, {level + 1}], c=dict(d='x{level}'))\n"
            f"shared_{level} = dict(level={level}, values=tuple(range({level % 5 + 1})))\n"
        )
    for level in range(depth):
        bases = [f"side_{level}.py"]
        if level:
            bases.insert(0, f"level_{level - 1}.py")
        lines = [f"_base_ = {bases!r}"]
        lines.append(
            f"model = dict(type='Net{level}', depth={level}, "
            f"head=dict(type='Head', channels=[{level}] * 4, dropout=0.{level % 10}))"
        )
        if level:
            lines.append(f"optimizer = dict(_delete_=True, type='SGD', lr=0.{level}, momentum=0.9)")
            lines.append(f"copied_{level} = {{{{ _base_.model.depth }}}}")
        else:
            lines.append("optimizer = dict(type='Adam', lr=0.001, betas=(0.9, 0.999))")
        lines.append(f"data = dict(train=dict(pipeline=[dict(type='Step{level}', p={level})]))")
        (directory / f"level_{level}.py").write_text("\n".join(lines) + "\n")
    return directory / f"level_{depth - 1}.py"


def wall(argv: list[str], cwd: Path, repeat: int, env: dict[str, str]) -> tuple[float, float]:
    """Median wall and median CPU seconds of running ``argv`` to completion (after a warm-up)."""
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True, env=env)
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, capture_output=True, env=env)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def heavy_imports(config: Path, cwd: Path) -> list[str]:
    """Top-level packages among torch/mlflow/sklearn that `trackcfg hash` imports."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "trackcfg", "hash", str(config)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    found = set()
    for line in proc.stderr.splitlines():
        name = line.rsplit("|", 1)[-1].strip()
        if name.split(".")[0] in {"torch", "mlflow", "sklearn", "numpy"}:
            found.add(name.split(".")[0])
    return sorted(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--depth", type=int, default=12)
    args = parser.parse_args()
    py = sys.executable
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {
            "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache"),
            "TRACKCFG_CACHE_DIR": str(Path(tmp) / "trackcfg"),
        }
        off = {**env, "TRACKCFG_CACHE": "off"}
        (Path(tmp) / "deep").mkdir()
        deep = write_deep_config(Path(tmp) / "deep", args.depth)
        det = REPO / "tests/data/configs/openmmlab/det/faster_rcnn"
        cases = {
            f"generated {args.depth}-level chain": deep,
            "configs/digits/mlp_sgd_20e.py": REPO / "configs/digits/mlp_sgd_20e.py",
            "openmmlab det x101 (7 files)": det / "faster-rcnn_x101-64x4d_fpn_ms-3x_coco.py",
        }

        def show(name: str, times: tuple[float, float], note: str = "") -> None:
            print(f"  {name:<34} {times[0] * 1e3:7.1f} ms  (cpu {times[1] * 1e3:6.1f} ms){note}")

        startup = wall([py, "-c", "pass"], REPO, args.repeat, env)
        cli = wall([py, "-c", "import trackcfg.cli.main"], REPO, args.repeat, env)
        show("python startup alone", startup)
        show("python + import trackcfg.cli.main", cli)
        for label, config in cases.items():
            hash_argv = [py, "-m", "trackcfg", "hash", str(config)]
            ours = wall(hash_argv, REPO, args.repeat, env)
            ours_off = wall(hash_argv, REPO, args.repeat, off)
            mmengine = wall(
                [
                    py,
                    "-c",
                    "import sys; from mmengine import Config; "
                    "Config.fromfile(sys.argv[1], import_custom_modules=False)",
                    str(config),
                ],
                REPO,
                args.repeat,
                env,
            )
            heavy = heavy_imports(config, REPO)
            ok = ours[0] < TARGET_S and not heavy
            failed |= not ok
            print(f"\n{label}")
            show("trackcfg hash (whole process)", ours, "  target < 150 ms")
            show("trackcfg hash, TRACKCFG_CACHE=off", ours_off)
            show("mmengine Config.fromfile", mmengine)
            for name, (w, c) in (("disk store warm", ours), ("caches off", ours_off)):
                print(
                    f"  mmengine / trackcfg, {name + ':':<16} {mmengine[0] / w:5.1f}x wall,"
                    f" {mmengine[1] / c:5.1f}x cpu"
                )
            print(
                f"  best ratio the floor allows:       {mmengine[0] / cli[0]:5.1f}x wall,"
                f" {mmengine[1] / cli[1]:5.1f}x cpu (python + importing the CLI)"
            )
            print(f"  heavy imports on the path:         {', '.join(heavy) or 'none'}")
            print(f"  {'OK' if ok else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
