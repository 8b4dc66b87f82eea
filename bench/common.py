"""Helpers shared by the development benchmarks: results files and worker processes.

Every engine runs in its own process (NumPy's OpenBLAS threads and torch's OpenMP
threads never share one), the processes take turns, and the figures are medians.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def save(name: str, data: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def worker(python: str, script: Path, args: list[str], env: dict[str, str] | None = None) -> Any:
    """Run ``python script args`` and parse the JSON it prints on its last stdout line."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [python, str(script), *args],
        capture_output=True,
        text=True,
        env=full_env,
        check=False,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"worker failed: {script.name} {' '.join(args)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return float("nan")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def per_position_median(runs: list[list[float]]) -> list[float]:
    """Median of each step's time over runs (cut to the shortest run)."""
    steps = min(len(r) for r in runs)
    return [median([r[i] for r in runs]) for i in range(steps)]
