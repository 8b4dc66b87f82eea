"""Saving a view as a picture: the format comes from the file's suffix.

``.png``/``.svg``/``.pdf``: a heatmap figure (side-by-side panels; a comparison adds
the |Δ| map and the verdict); ``.gif``: an animation of the rows, one decoding step
per frame. Every file is written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from maskviz._io import FIGURE_SUFFIXES, check_output_path
from maskviz.errors import check_type
from maskviz.masks import Mask
from maskviz.render.sizes import check_picture
from maskviz.view import AttentionView

__all__ = ["gif_frames", "save_mask", "save_view"]

ProgressCallback = Callable[[int, int | None], None]
VIEW_SUFFIXES = (*FIGURE_SUFFIXES, ".gif", ".html")
MASK_SUFFIXES = (*FIGURE_SUFFIXES, ".html")


def gif_frames(view: AttentionView) -> int:
    """How many frames `save_view` writes for a ``.gif`` of ``view``."""
    from maskviz.render.attention_figures import decode_frame_count

    return decode_frame_count(view)


def save_view(
    view: AttentionView,
    path: str | os.PathLike[str],
    *,
    dpi: int | None = None,
    width: float | None = None,
    progress: ProgressCallback | None = None,
) -> None:
    """Draw ``view`` into ``path`` (see the module docstring for formats); ``dpi``: a
    PNG's resolution; ``width``: a picture's width in inches (.png, .svg, .pdf)."""
    check_type(view, AttentionView, "view")
    path = check_output_path(path, VIEW_SUFFIXES)
    suffix = path.suffix.lower()
    check_picture(suffix, dpi, width)
    if suffix == ".html":  # an interactive page of this one view, drawn without matplotlib
        from maskviz.render.html import save_html

        save_html(view, path)
        return
    from maskviz.render import attention_figures as af
    from maskviz.render.figures import missing_glyphs_said_once, save_figure

    if suffix == ".gif":
        with missing_glyphs_said_once():
            af.save_decode_gif(path, view, progress=progress)
    elif suffix in FIGURE_SUFFIXES:
        # a comparison (it has a verdict) adds where its sides differ
        draw = af.comparison_figure if view.verdict is not None else af.attention_figure
        save_figure(draw(view, width=width), path, dpi=dpi)


def save_mask(
    mask: Mask,
    path: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    index_base: int = 1,
    highlight: int | None = None,
    padded: Sequence[int] | NDArray[np.int64] | None = None,
    dpi: int | None = None,
    width: float | None = None,
) -> None:
    """Draw a mask into ``path``: an ``.html`` page, or a ``.png``/``.svg``/``.pdf`` heatmap
    (``dpi``: a PNG's resolution; ``width``: its width in inches)."""
    check_type(mask, Mask, "mask")
    path = check_output_path(path, MASK_SUFFIXES)
    check_picture(path.suffix.lower(), dpi, width)
    if path.suffix.lower() == ".html":
        from maskviz.render.html import mask_page, write_page
        from maskviz.view import mask_view

        view = mask_view(
            mask, labels=labels, index_base=index_base, highlight=highlight, padded=padded
        )
        write_page(mask_page(view, mask, highlight=highlight), path)
        return
    from maskviz.render.figures import mask_figure, save_figure

    figure = mask_figure(
        mask,
        labels=labels,
        index_base=index_base,
        highlight=highlight,
        padded=() if padded is None else padded,
        width=width,
    )
    save_figure(figure, path, dpi=dpi)
