"""Saving a view as a picture: the format comes from the file's suffix.

``.png``/``.svg``/``.pdf``: a heatmap figure (side-by-side panels; a comparison adds
the |Δ| map); ``.gif``: an animation of the rows, one decoding step per frame. Every
file is written atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from maskviz.errors import usage_error
from maskviz.view import ALLOWED, AttentionView, Mark

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
ProgressCallback = Callable[[int, int | None], None]


def gif_frames(view: AttentionView) -> int:
    """How many frames `save_view` writes for a ``.gif`` of ``view``."""
    from maskviz.render.attention_figures import decode_frame_count

    return decode_frame_count(view.panels[0].n, _prompt_len(view), view.mode)


def _prompt_len(view: AttentionView) -> int:
    marks = [m.index for m in view.panels[0].marks if m.kind == "prompt"]
    return marks[0] if marks else view.panels[0].n


def _delimiter(marks: tuple[Mark, ...]) -> int:
    return next(m.index for m in marks if m.text == "delimiter")


def save_view(view: AttentionView, path: Path, *, progress: ProgressCallback | None = None) -> None:
    """Draw ``view`` into ``path`` (see the module docstring for formats)."""
    from maskviz.render import attention_figures as af
    from maskviz.render.figures import save_figure

    suffix = path.suffix.lower()
    panels = view.panels
    allowed = [p.states == ALLOWED for p in panels]
    if suffix == ".gif":
        af.save_decode_gif(
            path,
            [p.weights for p in panels],
            allowed[0],
            panels[0].labels,
            _prompt_len(view),
            view.title,
            [p.title for p in panels] if len(panels) > 1 else None,
            mode="cached" if view.mode == "cached" else "training",
            progress=progress,
        )
        return
    if suffix not in FIGURE_SUFFIXES:
        raise usage_error(f"cannot draw a view as {suffix!r}")
    if view.verdict is not None:  # a comparison: both sides and where they differ
        a, b = panels
        fig = af.comparison_figure(
            a.weights, b.weights, allowed[0], allowed[1], a.labels, _prompt_len(view),
            a.title, b.title, view.title,
        )  # fmt: skip
    elif not view.side_by_side:  # orderings of a text pair, each with its own tokens
        delimited = [
            af.DelimitedPanel(p.weights, ok, p.labels, _delimiter(p.marks), p.title.split(":")[0])
            for p, ok in zip(panels, allowed, strict=True)
        ]
        fig = af.similarity_figure(delimited, view.title)
    else:
        fig = af.attention_figure(
            [p.weights for p in panels], allowed[0], panels[0].labels, _prompt_len(view),
            [p.title for p in panels], view.title,
        )  # fmt: skip
    save_figure(fig, path)


__all__ = ["FIGURE_SUFFIXES", "gif_frames", "save_view"]
