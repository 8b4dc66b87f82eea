"""Command-line wall times and peak memory, measured as a user runs the commands.

    python bench/startup.py

Each command runs ``--runs`` times in a fresh process; the figures are medians of
wall time and the largest resident set size (from the kernel's rusage of that
child). ``python -X importtime`` checks which heavy modules a command imports.
Writes bench/results/startup.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, median, save

HEAVY = ("matplotlib", "PIL", "safetensors", "tokenizers", "maskviz.model", "maskviz.loading")


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak resident bytes of one run of ``cmd``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return wall, usage.ru_maxrss * 1024  # Linux reports kilobytes


def imported(args: list[str]) -> list[str]:
    """Top-level packages from HEAVY that ``python -X importtime -m maskviz args`` imports."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "maskviz", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    return sorted(h for h in HEAVY if h in names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    exe = shutil.which("maskviz", path=str(Path(sys.executable).parent))
    maskviz = [exe] if exe else [sys.executable, "-m", "maskviz"]
    shipped = ROOT / "maskviz" / "models" / "tiny" / "model.safetensors"
    model = [] if shipped.exists() else ["--model", "tests/fixtures/gpt2-tiny"]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import numpy'": [sys.executable, "-c", "import numpy"],
        "maskviz show-mask 6": [*maskviz, "show-mask", "6"],
        "maskviz trace (16 steps)": [
            *maskviz,
            "trace",
            "To be, or not to be",
            "--steps",
            "16",
            *model,
        ],
        "maskviz show-mask 1000000 --window 4096": [
            *maskviz,
            "show-mask",
            "1000000",
            "--window",
            "4096",
        ],
    }
    # Bytecode goes to a private folder (the checkout stays clean): that is how a
    # pip-installed maskviz starts. "compiling" is an editable install under
    # PYTHONDONTWRITEBYTECODE=1 with no maskviz/__pycache__: Python then compiles
    # maskviz's own modules at every start (its dependencies keep their bytecode).
    with tempfile.TemporaryDirectory() as cached:
        warm = {"PYTHONPYCACHEPREFIX": cached, "PYTHONDONTWRITEBYTECODE": ""}
        cold = {"PYTHONDONTWRITEBYTECODE": "1"}
        for cmd in commands.values():
            timed(cmd, warm)  # write the bytecode, warm the page cache
        samples: dict[str, list[tuple[float, int]]] = {name: [] for name in commands}
        compiled: list[float] = []
        for _ in range(args.runs):  # interleaved, so a slow moment hits every command alike
            for name, cmd in commands.items():
                samples[name].append(timed(cmd, warm))
            compiled.append(timed(commands["maskviz show-mask 6"], cold)[0])
    results: dict[str, Any] = {
        "runs": args.runs,
        "model": "tiny" if not model else "tests/fixtures/gpt2-tiny",
        "show_mask_6_compiling_seconds": median(compiled),
        "commands": {
            name: {
                "argv": " ".join(cmd[len(maskviz) :]) if cmd[: len(maskviz)] == maskviz else None,
                "seconds": median([s for s, _ in runs]),
                "min_seconds": min(s for s, _ in runs),
                "peak_rss_bytes": max(m for _, m in runs),
            }
            for (name, cmd), runs in zip(commands.items(), samples.values(), strict=True)
        },
        "heavy_imports": {
            "show-mask 6": imported(["show-mask", "6"]),
            "show-mask 1000000 --window 4096": imported(
                ["show-mask", "1000000", "--window", "4096"]
            ),
        },
    }
    path = save("startup", results)
    for name, data in results["commands"].items():
        print(
            f"{name:<42} {data['seconds']:.3f} s (min {data['min_seconds']:.3f}), "
            f"peak {data['peak_rss_bytes'] / 1e6:.0f} MB"
        )
    for name, mods in results["heavy_imports"].items():
        print(f"{name}: imports {', '.join(mods) or 'none of ' + ', '.join(HEAVY)}")
    print(
        f"show-mask 6 compiling maskviz's modules: {results['show_mask_6_compiling_seconds']:.3f} s"
    )
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
