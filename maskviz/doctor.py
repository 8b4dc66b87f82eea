"""What a bug report needs: versions, BLAS, optional extras, where the shipped model is."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

OPTIONAL = ("tokenizers", "huggingface_hub", "threadpoolctl")
REQUIRED = ("numpy", "typer", "rich", "matplotlib", "safetensors")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def report() -> dict[str, Any]:
    """Environment facts as plain data.

    >>> sorted(report())[:3]
    ['blas', 'environment', 'hf_extra']
    """
    import numpy as np

    from maskviz import __version__
    from maskviz.bench import blas_info
    from maskviz.loading import shipped_model_dir, shipped_models
    from maskviz.tokenizer import HF_EXTRA

    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    return {
        "maskviz": __version__,
        "python": f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} CPUs",
        "packages": {name: _version(name) for name in REQUIRED},
        "optional": {name: _version(name) or "not installed" for name in OPTIONAL},
        # what runs (the kernel OpenBLAS picked for this CPU, its threads), then how it
        # was built
        "blas": {**blas_info(), "configuration": blas.get("openblas configuration")},
        "environment": {
            key: os.environ[key]
            for key in (
                "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE",
                "OMP_NUM_THREADS",
                "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS",
                "HF_HUB_OFFLINE",
                "HF_HOME",
            )
            if key in os.environ
        },
        "shipped_models": {
            name: {"path": str(folder), "present": (folder / "model.safetensors").is_file()}
            for name, folder in ((name, shipped_model_dir(name)) for name in shipped_models())
        },
        "hf_extra": "installed"
        if all(_version(p) for p in ("tokenizers", "huggingface_hub"))
        else f"missing: {HF_EXTRA}",
    }
