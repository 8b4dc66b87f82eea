"""Helpers shared by the development benchmarks: results files and worker processes.

Every engine runs in its own process (NumPy's OpenBLAS threads and torch's OpenMP
threads never share one), the processes take turns, and the figures are medians.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
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


def _busy_seconds() -> float | None:
    """CPU seconds all processes (and the hypervisor, as steal) have used since boot."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(v) for v in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit: float = 300.0, idle: float = 0.95) -> None:
    """Wait (up to ``limit`` s) until the CPUs are ``idle`` idle over two 3-second spans."""
    cores = os.cpu_count() or 1
    calm, start = 0, time.monotonic()
    while calm < 2 and time.monotonic() - start < limit:
        before = _busy_seconds()
        time.sleep(3.0)
        after = _busy_seconds()
        if before is None or after is None:
            return
        calm = calm + 1 if (after - before) / (3.0 * cores) <= 1 - idle else 0


def worker(
    python: str,
    script: Path,
    args: list[str],
    env: dict[str, str] | None = None,
    *,
    attempts: int = 3,
    tolerance: float = 0.10,
    quiet_wait: float = 300.0,
) -> Any:
    """Run ``python script args`` and parse the JSON it prints on its last stdout line.

    A run during which other processes used more than ``tolerance`` of a core (other
    people's test runs, a busy host) is thrown away and repeated, up to ``attempts``
    times; the last one is kept either way and says how disturbed it was. Each try
    first waits up to ``quiet_wait`` seconds for idle CPUs.
    """
    full_env = {**os.environ, **(env or {})}
    data: Any = None
    for attempt in range(1, attempts + 1):
        wait_quiet(quiet_wait)
        busy0, ours0, t0 = _busy_seconds(), _children_seconds(), time.monotonic()
        proc = subprocess.run(
            [python, str(script), *args],
            capture_output=True,
            text=True,
            env=full_env,
            check=False,
        )
        busy1, ours1, wall = _busy_seconds(), _children_seconds(), time.monotonic() - t0
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"worker failed: {script.name} {' '.join(args)}")
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        others = 0.0
        if busy0 is not None and busy1 is not None:
            others = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / wall
        if isinstance(data, dict):
            data["others_cpu"] = others
            data["attempt"] = attempt
        if others <= tolerance:
            break
        again = "; again" if attempt < attempts else "; kept"
        print(f"  disturbed (other processes used {others:.2f} cores){again}", flush=True)
    return data


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
