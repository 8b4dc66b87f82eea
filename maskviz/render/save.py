"""Saving a view as a picture: the format comes from the file's suffix.

``.png``/``.svg``/``.pdf``: a heatmap figure (side-by-side panels; a comparison adds
the |Δ| map and the verdict); ``.gif``: an animation of the rows, one decoding step
per frame. Every file is written atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from maskviz.errors import usage_error
from maskviz.view import AttentionView

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
ProgressCallback = Callable[[int, int | None], None]


def gif_frames(view: AttentionView) -> int:
    """How many frames `save_view` writes for a ``.gif`` of ``view``."""
    from maskviz.render.attention_figures import decode_frame_count

    return decode_frame_count(view)


def save_view(view: AttentionView, path: Path, *, progress: ProgressCallback | None = None) -> None:
    """Draw ``view`` into ``path`` (see the module docstring for formats)."""
    from maskviz.render import attention_figures as af
    from maskviz.render.figures import save_figure

    suffix = path.suffix.lower()
    if suffix == ".gif":
        af.save_decode_gif(path, view, progress=progress)
    elif suffix in FIGURE_SUFFIXES:
        # a comparison (it has a verdict) adds where its sides differ
        draw = af.comparison_figure if view.verdict is not None else af.attention_figure
        save_figure(draw(view), path)
    elif suffix == ".html":  # an interactive page of this one view (maskviz.render.html)
        from maskviz.render.html import save_html

        save_html(view, path)
    else:
        raise usage_error(f"cannot draw a view as {suffix!r}")


__all__ = ["FIGURE_SUFFIXES", "gif_frames", "save_view"]
