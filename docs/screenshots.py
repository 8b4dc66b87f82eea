"""Regenerate the HTML viewer's example page and the screenshots in docs/html.md.

``python docs/screenshots.py`` saves pages with the tool itself (``--save NAME.html``),
opens them in headless Chromium (Debian's ``chromium``) and captures:

- ``docs/examples/trace.html``: the headline trace page the README links to;
- ``docs/images/html-trace.png``: one head at decoding step 5, a cell's tooltip shown;
- ``docs/images/html-heads.png``: every head of a layer as small multiples;
- ``docs/images/html-evicted.png``: a sliding-window layer whose rolling cache evicted keys;
- ``docs/images/html-compare.png``: training vs cached, both sides, |Δ| and the verdict.

The browser is driven over the DevTools protocol by ``tests/chromium.py``, as the tests do.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
EXAMPLE = ROOT / "docs" / "examples" / "trace.html"
SWA = ROOT / "tests" / "fixtures" / "mistral-tiny"
HOVER = (
    "(() => {{ const c = document.querySelectorAll('.maskviz .mv-canvas')[{canvas}];"
    " const b = c.getBoundingClientRect(), s = Number(c.dataset.cell);"
    " return [b.left + Number(c.dataset.left) + ({key} + 0.5) * s,"
    " b.top + Number(c.dataset.top) + ({row} + 0.5) * s]; }})()"
)


def save(*args: str) -> None:
    from typer.testing import CliRunner

    from maskviz.cli import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "80", "NO_COLOR": "1"})
    if result.exit_code != 0:
        raise SystemExit(f"maskviz {' '.join(args)} failed: {result.stderr}")


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from tests.chromium import browser

    EXAMPLE.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pages = Path(tmp)
        save("trace", "To be, or not to be", "--save", str(EXAMPLE))
        save("trace", "To be, or not to be", "--model", str(SWA), "--steps", "12",
             "--save", str(pages / "swa.html"))  # fmt: skip
        save("compare", "training-vs-cached", "--steps", "8", "--save", str(pages / "c.html"))
        shots = [
            ("html-trace.png", EXAMPLE, "layer=2&head=1&step=5", (0, 23, 4)),
            ("html-heads.png", EXAMPLE, "layer=0&head=all&step=10", None),
            ("html-evicted.png", pages / "swa.html", "layer=0&head=0&step=9", (0, 20, 3)),
            ("html-compare.png", pages / "c.html", "layer=1&head=2", (2, 45, 20)),
        ]
        with browser(width=1280, height=1200) as b:
            tab = b.tab()
            for name, page, fragment, hover in shots:
                tab.open(page.resolve().as_uri() + "#" + fragment)
                if hover is not None:
                    canvas, row, key = hover
                    x, y = tab.eval(HOVER.format(canvas=canvas, row=row, key=key))
                    tab.mouse_move(x, y)
                if tab.errors():
                    raise SystemExit(f"{page}: {tab.errors()}")
                tab.screenshot(IMAGES / name, selector=".maskviz")
                print(f"wrote docs/images/{name}")
    print(f"wrote {EXAMPLE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
