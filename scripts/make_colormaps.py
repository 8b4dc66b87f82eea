"""Write maskviz/render/colormaps.json: the figures' two colormaps at 256 levels.

Pages colour their cells from this table, so that writing one needs no matplotlib;
tests/test_html.py checks it against matplotlib. Run after changing a colormap:

    python scripts/make_colormaps.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib as mpl
import numpy as np

from maskviz.render.style import DIFF_CMAP, WEIGHTS_CMAP


def sampled(name: str) -> str:
    """Colormap ``name`` as 256 colours, "rrggbb" each, joined (rounded to nearest)."""
    rgba = mpl.colormaps[name].resampled(256)(np.arange(256))
    return "".join(
        f"{int(r * 255 + 0.5):02x}{int(g * 255 + 0.5):02x}{int(b * 255 + 0.5):02x}"
        for r, g, b, _ in rgba
    )


def main() -> None:
    path = Path(__file__).resolve().parent.parent / "maskviz" / "render" / "colormaps.json"
    table = {name: sampled(name) for name in (WEIGHTS_CMAP, DIFF_CMAP)}
    path.write_text(json.dumps(table, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
