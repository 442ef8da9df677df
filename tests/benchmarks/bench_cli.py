"""Benchmark: `trackcfg hash` on a deep config, as a whole process, vs mmengine loading it.

Run: ``python tests/benchmarks/bench_cli.py [--repeat 15]``. Prints median wall
times and ratios; exits 1 when `trackcfg hash` misses its 0.15 s target or pulls
in torch/mlflow. Not collected by pytest (the file name starts with ``bench_``).

The deep config is generated in a temp dir: a chain of ``--depth`` files, each
inheriting the previous one plus two side bases, overriding a dict with
``_delete_``, substituting ``{{ _base_.x }}`` and adding nested keys; the
repository's ``configs/digits/mlp_sgd_20e.py`` is measured too. Both tools load
the same files; mmengine is told not to import ``custom_imports`` either.
"""

from __future__ import annotations

import argparse
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


def wall(argv: list[str], cwd: Path, repeat: int) -> float:
    """Median wall time of running ``argv`` to completion (after one warm-up)."""
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
        deep = write_deep_config(Path(tmp), args.depth)
        cases = {
            f"generated {args.depth}-level chain": deep,
            "configs/digits/mlp_sgd_20e.py": REPO / "configs/digits/mlp_sgd_20e.py",
        }
        startup = wall([py, "-c", "pass"], REPO, args.repeat)
        print(f"python startup alone:            {startup * 1e3:7.1f} ms")
        for label, config in cases.items():
            ours = wall([py, "-m", "trackcfg", "hash", str(config)], REPO, args.repeat)
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
            )
            heavy = heavy_imports(config, REPO)
            ok = ours < TARGET_S and not heavy
            failed |= not ok
            print(f"\n{label}")
            print(f"  trackcfg hash (whole process): {ours * 1e3:7.1f} ms  target < 150 ms")
            print(f"  mmengine Config.fromfile:      {mmengine * 1e3:7.1f} ms")
            print(f"  ratio trackcfg / mmengine:     {ours / mmengine:7.2f}")
            print(f"  heavy imports on the path:     {', '.join(heavy) or 'none'}")
            print(f"  {'OK' if ok else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
