"""The ``maskviz`` command line: parse, call the library, pick a renderer.

Errors from the library (`MaskvizError`) and from argument parsing become one
line on stderr and an exit code (2 for usage errors), never a traceback;
`maskviz._cli_process` is where that is done.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from maskviz import __version__
from maskviz import masks as masks_lib
from maskviz._cli_process import (
    PROG,
    OneLineErrors,
    console,
    exits_like_cmp,
    print_json,
    progress_bar,
    ramp_shading,
    run,
    say_saved,
)
from maskviz._io import FIGURE_SUFFIXES, check_output_path, output_path
from maskviz._text import plural
from maskviz.errors import MaskvizError, usage_error
from maskviz.render import sizes
from maskviz.render.terminal import mask_report
from maskviz.tokenizer import check_ids, utf8

if TYPE_CHECKING:
    from maskviz.bench import BenchResult
    from maskviz.model import GPT
    from maskviz.render.html import Page
    from maskviz.trace import Trace
    from maskviz.view import AttentionView

FIGURE_OR_PAGE = (*FIGURE_SUFFIXES, ".html")

app = typer.Typer(
    cls=OneLineErrors,
    name=PROG,
    help="See and check how masked self-attention works in a GPT.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {__version__}", file=sys.stdout)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """See and check how masked self-attention works in a GPT.

    Examples: maskviz show-mask 6 --kind strict
    """


NoColourOption = Annotated[
    bool, typer.Option("--plain", help="No colour (also when piped or NO_COLOR is set).")
]
DpiOption = Annotated[
    int | None,
    typer.Option(
        metavar="<dpi>",
        help=f"A saved .png's dots per inch ({sizes.DPI_RANGE[0]} to {sizes.DPI_RANGE[1]}; default {sizes.DEFAULT_DPI}). "
        ".svg and .pdf are vector: sharp at any size.",
        show_default=False,
    ),
]


def _width_option(least: float, more: str = "") -> Any:
    """--width, its help naming the widths a command accepts: from ``least`` (``more``
    says what needs more) to `maskviz.render.sizes.MAX_WIDTH`."""
    examples = "3.3 for a paper's column, 7 for its text width"
    if least > 3.3:
        examples = "7 for a paper's text width"
    return typer.Option(
        metavar="<inches>",
        help=f"A saved .png, .svg or .pdf's width in inches, e.g. {examples} "
        f"({sizes.shown(least):g} to {sizes.MAX_WIDTH:g}{more}). Text shrinks with the "
        "picture, never below 70%.",
        show_default=False,
    )


_PANEL_LEAST = sizes.least_width(1, sizes.GRID_MARGIN)
MaskWidthOption = Annotated[
    float | None, _width_option(sizes.mask_least(), "; --text labels need more")
]
WidthOption = Annotated[float | None, _width_option(_PANEL_LEAST, "; several heads need more")]
_COMPARISON_LEAST = sizes.least_width(3, sizes.COMPARISON_MARGIN)
ComparisonWidthOption = Annotated[float | None, _width_option(_COMPARISON_LEAST)]
_SIMILARITY_LEAST = sizes.least_width(2, sizes.grid_margin(2, shared_axes=False))
SimilarityWidthOption = Annotated[float | None, _width_option(_SIMILARITY_LEAST)]
BenchWidthOption = Annotated[float | None, _width_option(sizes.BENCH_LEAST)]


def _check_panels(width: float | None, count: int, *, shared_axes: bool = True) -> None:
    """Refuse a --width too narrow for ``count`` heatmaps, before the run draws them."""
    across = sizes.across(count)
    least = sizes.least_width(across, sizes.grid_margin(across, shared_axes))
    sizes.check_width(width, least, sizes.panels_text(count))


def _check_picture(dpi: int | None, width: float | None, save: Path | None) -> None:
    """Refuse a --dpi or --width that would not be used or is out of range (before any
    work)."""
    if save is None:
        if dpi is not None:
            raise usage_error("--dpi needs --save with a .png file")
        if width is not None:
            raise usage_error("--width needs --save with a .png, .svg or .pdf file")
        return
    sizes.check_picture(save.suffix.lower(), dpi, width, option=True)


# ---------------------------------------------------------------- show-mask


class KindChoice(StrEnum):
    causal = "causal"
    strict = "strict"
    bidirectional = "bidirectional"
    prefix_lm = "prefix-lm"


class PadSide(StrEnum):
    left = "left"
    right = "right"


MAX_SHOW_N = 10_000_000


SAMPLING_OPTIONS = ("temperature", "seed", "top_k=--top-k")  # `GPT.trace`'s words for them
# the mask library's words for what show-mask's options set
MASK_OPTIONS = (
    *("window", "prefix", "chunk", "pad", "kind"),
    *("document lengths=--docs", "document length=each --docs length"),
)


@contextlib.contextmanager
def _options_named(*names: str, n: bool = False) -> Iterator[None]:
    """Say "--window" where the library says "window": a usage error raised inside
    names the option the user typed (``n``: the argument N). Words that are not the
    option's own name ("top_k", "document lengths") are given as "words=--option"."""
    try:
        yield
    except MaskvizError as exc:
        if exc.exit_code != 2:
            raise
        message = str(exc)
        for name in names:
            word, _, option = name.partition("=")
            # whole words only: "prefix" but not "prefix-lm"
            message = re.sub(rf"(?<![\w'-]){word}(?![\w'-])", option or f"--{word}", message)
        if n:
            message = re.sub(r"\bn\b", "N", message)
        raise usage_error(message) from None


def _parse_lengths(value: str) -> list[int]:
    try:
        lengths = [int(part) for part in value.split(",")]
    except ValueError:
        raise usage_error(
            f"--docs must be comma-separated integers like 3,2,4, got {value!r}"
        ) from None
    return lengths


@app.command("show-mask")
def show_mask(
    n: Annotated[
        int,
        typer.Argument(
            metavar="N", help="Sequence length: the mask is N queries x N keys.", show_default=False
        ),
    ],
    kind: Annotated[
        KindChoice,
        typer.Option(
            "--kind",
            "-k",
            metavar="<kind>",
            help="Base pattern. causal: key <= query (GPT-2); strict: key < query; bidirectional: all; prefix-lm: needs --prefix.",
        ),
    ] = KindChoice.causal,
    window: Annotated[
        int | None,
        typer.Option(
            help="Sliding window W: each query sees the W keys ending at itself (W counts the "
            "query); with --kind bidirectional or prefix-lm, also the W starting at it.",
            show_default=False,
        ),
    ] = None,
    prefix: Annotated[
        int | None,
        typer.Option(
            help="Prefix length P for --kind prefix-lm: the first P positions see each other both ways.",
            show_default=False,
        ),
    ] = None,
    docs: Annotated[
        str | None,
        typer.Option(
            help="Packed documents, lengths summing to N, e.g. 3,2,4: no attention across documents.",
            show_default=False,
        ),
    ] = None,
    chunk: Annotated[
        int | None,
        typer.Option(
            help="Chunked attention: queries see only keys in their chunk of C positions.",
            show_default=False,
        ),
    ] = None,
    pad: Annotated[
        int | None,
        typer.Option(
            help="K padding positions: padded keys are never attended, padded queries attend to nothing.",
            show_default=False,
        ),
    ] = None,
    pad_side: Annotated[PadSide, typer.Option(help="Which end --pad pads.")] = PadSide.left,
    step: Annotated[
        int | None,
        typer.Option(
            help="Highlight the query row T that one cached decoding step computes.",
            show_default=False,
        ),
    ] = None,
    text: Annotated[
        str | None,
        typer.Option(
            help="Label positions with these whitespace-separated words (exactly N).",
            show_default=False,
        ),
    ] = None,
    index_base: Annotated[
        int, typer.Option(help="Number positions from 1 (default) or 0 (code-style).")
    ] = 1,
    plain: NoColourOption = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the mask as JSON instead of drawing it (above 1,024 keys: pooled "
            "cells, 0 none / 1 some / 2 all allowed).",
        ),
    ] = False,
    save: Annotated[
        Path | None,
        typer.Option(
            parser=output_path,
            metavar="<path>",
            help="Also save a heatmap (.png, .svg, .pdf) or an interactive page (.html); written atomically.",
            show_default=False,
        ),
    ] = None,
    dpi: DpiOption = None,
    width: MaskWidthOption = None,
) -> None:
    """Draw an N x N attention mask: ● may attend, ○ may not; rows are queries, columns keys.

    Examples:

    maskviz show-mask 6 --kind strict

    maskviz show-mask 12 --window 4 --step 9

    maskviz show-mask 9 --docs 3,2,4 --save docs.png

    maskviz show-mask 1000000 --window 4096
    """
    if index_base not in (0, 1):
        raise usage_error(f"--index-base must be 0 or 1, got {index_base}")
    if n > MAX_SHOW_N:
        raise usage_error(
            f"N = {n:,} is too large; show-mask draws at most {MAX_SHOW_N:,} positions"
        )
    if pad is None and pad_side is not PadSide.left:
        raise usage_error("--pad-side needs --pad")
    if text is not None:
        text = utf8(text, "--text").decode()
    labels = text.split() if text is not None else None
    if labels is not None and len(labels) != n:
        raise usage_error(f"--text has {plural(len(labels), 'word')} but N is {n}")
    if save is not None:
        save = check_output_path(save, FIGURE_OR_PAGE)
        if save.suffix.lower() == ".html":
            from maskviz.render.html import check_positions

            check_positions(n)
    _check_picture(dpi, width, save)
    with _options_named(*MASK_OPTIONS, n=True):
        mask = masks_lib.build(
            n,
            kind.value,
            window=window,
            prefix=prefix,
            document_lengths=None if docs is None else _parse_lengths(docs),
            chunk=chunk,
            pad=pad,
            pad_side=pad_side.value,
        )
    highlight = None
    if step is not None:
        highlight = step - index_base
        if not 0 <= highlight < n:
            raise usage_error(
                f"--step must be a position from {index_base} to {n - 1 + index_base}"
            )
    padded = None if not pad else masks_lib.padded_positions(n, pad, pad_side.value)
    if save is not None:  # first: a width the picture cannot take is refused before any output
        from maskviz.render.save import save_mask

        save_mask(
            mask, save, labels=labels, index_base=index_base, highlight=highlight,
            padded=padded, dpi=dpi, width=width,
        )  # fmt: skip
    if as_json:
        print_json(mask.to_dict(index_base, labels, padded))
    else:
        console(plain).print(mask_report(mask, labels, index_base, highlight, padded))
    if save is not None and not as_json:
        say_saved(save, plain)


# ---------------------------------------------------------------- trace


class DTypeChoice(StrEnum):
    float32 = "float32"
    float64 = "float64"


class ModeChoice(StrEnum):
    cached = "cached"
    training = "training"


class AggChoice(StrEnum):
    mean = "mean"
    max = "max"


TRACE_FILES = (".npz", ".json")  # maskviz.trace.SUFFIXES, without importing it to parse
TRACE_SUFFIXES = (*FIGURE_SUFFIXES, ".gif", ".html", *TRACE_FILES)
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="A shipped model ('tiny', the default, or 'tiny-swa'), a checkpoint folder "
        "(GPT-2, Llama, Mistral, Qwen2, Qwen3) or a hub id such as gpt2.",
        show_default=False,
    ),
]
DTypeOption = Annotated[DTypeChoice, typer.Option(help="Float type the engine computes in.")]
LayerOption = Annotated[int, typer.Option(help="Layer whose attention is drawn (0-based).")]
HeadOption = Annotated[int, typer.Option(help="Head whose attention is drawn (0-based).")]
HeadChoiceOption = Annotated[
    int | None,
    typer.Option(help="Head whose attention is drawn (0-based; default 0).", show_default=False),
]
HeadsOption = Annotated[
    str | None,
    typer.Option(help="Several heads side by side: 'all' or a list like 0,2.", show_default=False),
]
AggOption = Annotated[
    AggChoice | None,
    typer.Option(
        help="Combine the layer's heads: mean or max (instead of --head).", show_default=False
    ),
]
TraceSaveOption = Annotated[
    Path | None,
    typer.Option(
        parser=output_path,
        metavar="<path>",
        help="Save: .png/.svg/.pdf heatmap, .gif animation, .html interactive page (every "
        "recorded layer and head), .npz or .json trace.",
        show_default=False,
    ),
]
PlainOption = Annotated[
    bool, typer.Option("--plain", help="No colour: shade weights with a character ramp.")
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON instead of drawing.")
]


def _load(
    model: str | None, dtype: DTypeChoice, layer: int | None = None, head: int | None = None
) -> GPT:
    """Load the model and check that ``layer`` and ``head`` exist in it."""
    from maskviz.loading import load_model

    gpt = load_model(model, dtype=dtype.value)
    if layer is not None:
        _check_index("layer", layer, gpt.config.n_layer)
    if head is not None:
        _check_index("head", head, gpt.config.n_head)
    return gpt


def _check_index(what: str, value: int, count: int, option: str | None = None) -> None:
    if not 0 <= value < count:
        raise usage_error(
            f"--{option or what} {value} is out of range: the model has "
            f"{plural(count, what)} (0..{count - 1})"
        )


def _heads(spec: str | None, among: int | Trace) -> list[int] | None:
    """The heads ``--heads`` names among a model's ``among`` heads, or among the heads a
    saved trace recorded."""
    if spec is None:
        return None
    available = list(range(among)) if isinstance(among, int) else among.heads.tolist()
    if spec == "all":
        return available
    try:
        chosen = [int(part) for part in spec.split(",")]
    except ValueError:
        raise usage_error(f"--heads must be 'all' or a list like 0,2, got {spec!r}") from None
    for h in chosen:
        if isinstance(among, int):
            _check_index("head", h, among, option="heads")
        elif h not in available:
            raise usage_error(
                f"--heads: head {h} was not recorded in the trace (heads {available})"
            )
    if len(set(chosen)) != len(chosen):
        raise usage_error(f"--heads names a head twice: {spec!r}")
    return chosen


def _check_head_choice(head: int | None, heads: str | None, agg: AggChoice | None) -> None:
    if agg is not None and heads is not None:
        raise usage_error("--agg and --heads cannot be combined")
    if head is not None and (agg is not None or heads is not None):
        raise usage_error(f"--head cannot be combined with --{'agg' if agg else 'heads'}")


@app.command("trace")
def trace_command(
    prompt: Annotated[
        str, typer.Argument(help="Text to feed the model (quote it).", show_default=False)
    ],
    steps: Annotated[int, typer.Option(help="Tokens to generate after the prompt.")] = 16,
    model: ModelOption = None,
    dtype: DTypeOption = DTypeChoice.float32,
    temperature: Annotated[
        float, typer.Option(help="0 = greedy; > 0 samples (with --seed for repeatable runs).")
    ] = 0.0,
    top_k: Annotated[
        int | None,
        typer.Option(
            metavar="<int>",
            help="Sample only from the K most likely tokens.",
            show_default=False,
            min=1,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Random seed for sampling (without it a seed is chosen and printed).",
            show_default=False,
        ),
    ] = None,
    layer: LayerOption = 0,
    head: HeadChoiceOption = None,
    heads: HeadsOption = None,
    agg: AggOption = None,
    mode: Annotated[
        ModeChoice,
        typer.Option(
            help="cached: prefill + one cached step per token; training: one masked pass over the final sequence."
        ),
    ] = ModeChoice.cached,
    plain: PlainOption = False,
    save: TraceSaveOption = None,
    dpi: DpiOption = None,
    width: WidthOption = None,
    as_json: JsonOption = False,
) -> None:
    """Watch a GPT decode: the prompt in one masked pass, then one cached query per step.

    Examples:

    maskviz trace "To be, or not to be"

    maskviz trace "ROMEO:" --steps 32 --layer 3 --agg mean

    maskviz trace "To be" --mode training --save attention.png

    maskviz trace "To be" --save decode.gif
    """
    if steps < 0:
        raise usage_error(f"--steps must be >= 0, got {steps}")
    _check_head_choice(head, heads, agg)
    from maskviz.model import check_context, check_sampling

    with _options_named(*SAMPLING_OPTIONS):  # before the model loads
        check_sampling(temperature, top_k, seed)
    head = head or 0
    prompt = utf8(prompt, "the prompt").decode()
    if save is not None:
        save = check_output_path(save, TRACE_SUFFIXES)
    _check_picture(dpi, width, save)
    gpt = _load(model, dtype, layer, head)
    cfg = gpt.config
    head_list = _heads(heads, cfg.n_head)
    _check_panels(width, len(head_list) if head_list else 1)
    ids = gpt.tokenizer.encode(prompt)
    check_ids(ids, cfg.vocab_size)
    check_context(len(ids), steps, cfg.n_ctx, option="--steps")
    full = as_json or (save is not None and save.suffix.lower() in (*TRACE_FILES, ".html"))
    rec_heads = None if (full or agg or head_list) else [head]
    result = gpt.trace(
        ids,
        steps=steps,
        mode=mode.value,
        layers=None if full else [layer],
        heads=rec_heads,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
    )
    from maskviz.view import trace_view

    view = trace_view(
        result, layer=layer, head=None if agg or head_list else head, heads=head_list,
        agg=agg.value if agg else None,
    )  # fmt: skip
    _show(
        view, result.to_dict(), plain=plain, as_json=as_json, save=save, dpi=dpi, width=width, trace=result,
        page=lambda: _html().trace_page(
            result, layer=layer, head=head, agg=agg.value if agg else None, group=head_list
        ),
    )  # fmt: skip


def _show(
    view: AttentionView, data: dict[str, Any], *, plain: bool, as_json: bool,
    save: Path | None, dpi: int | None = None, width: float | None = None,
    trace: Trace | None = None, page: Callable[[], Page] | None = None,
) -> None:  # fmt: skip
    """Print the view (or its JSON data) and save what ``--save`` asked for (``dpi``: a
    PNG's; ``width``: a picture's, inches); ``page`` builds the .html page (every layer
    and head), else it shows ``view`` alone."""
    from maskviz.render.grid import render_view

    if as_json:
        print_json(data)
    else:
        out = console(plain)
        out.print(render_view(view, plain=ramp_shading(out)))
    if save is None:
        return
    if save.suffix.lower() in TRACE_FILES and trace is not None:
        trace.save(save)
    elif save.suffix.lower() == ".html" and page is not None:
        _html().write_page(page(), save)
    elif save.suffix.lower() == ".gif":
        from maskviz.render.save import gif_frames, save_view

        with progress_bar("writing GIF", "frames", gif_frames(view), plain=plain) as update:
            save_view(view, save, progress=update)
    else:
        from maskviz.render.save import save_view

        save_view(view, save, dpi=dpi, width=width)
    if not as_json:
        say_saved(save, plain)


def _html() -> ModuleType:
    from maskviz.render import html

    return html


# ---------------------------------------------------------------- view


def _trace_file(value: str) -> Path:
    if not value:  # Path("") would be the current folder
        raise usage_error("the trace file's name is empty")
    return Path(value)


_trace_file.__name__ = "path"  # --help shows an argument's parser by name: <path>


@app.command("view")
def view_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="A trace saved by `maskviz trace --save` (.npz or .json).",
            show_default=False,
            parser=_trace_file,
        ),
    ],
    layer: Annotated[
        int | None,
        typer.Option(
            help="Layer whose attention is drawn (0-based; default: the first recorded).",
            show_default=False,
        ),
    ] = None,
    head: Annotated[
        int | None,
        typer.Option(
            help="Head whose attention is drawn (0-based; default: the first recorded).",
            show_default=False,
        ),
    ] = None,
    heads: HeadsOption = None,
    agg: AggOption = None,
    plain: PlainOption = False,
    save: TraceSaveOption = None,
    dpi: DpiOption = None,
    width: WidthOption = None,
    as_json: JsonOption = False,
) -> None:
    """Draw a saved trace again, in the terminal or as a picture, without loading the model.

    Examples:

    maskviz trace "To be" --save t.npz && maskviz view t.npz

    maskviz view t.npz --layer 3 --heads all --save heads.png
    """
    from maskviz.trace import Trace
    from maskviz.view import trace_view

    _check_head_choice(head, heads, agg)
    if save is not None:
        save = check_output_path(save, TRACE_SUFFIXES)  # drawn, animated or converted
    _check_picture(dpi, width, save)
    trace = Trace.load(file)
    recorded = trace.heads.tolist()
    if not recorded or not trace.layers.size:
        raise usage_error(f"{file} recorded no attention head: there is nothing to draw")
    if layer is None:
        layer = int(trace.layers[0])
    if layer not in trace.layers:
        raise usage_error(
            f"--layer {layer} was not recorded in {file} (layers {trace.layers.tolist()})"
        )
    if head is None and heads is None and agg is None:
        head = recorded[0]
    elif head is not None and head not in recorded:
        raise usage_error(f"--head {head} was not recorded in {file} (heads {recorded})")
    chosen = _heads(heads, trace)
    _check_panels(width, len(chosen) if chosen else 1)
    view = trace_view(trace, layer=layer, head=head, heads=chosen, agg=agg.value if agg else None)
    _show(
        view, trace.to_dict(), plain=plain, as_json=as_json, save=save, dpi=dpi, width=width, trace=trace,
        page=lambda: _html().trace_page(
            trace, layer=layer, head=head, agg=agg.value if agg else None, group=chosen
        ),
    )  # fmt: skip


# ---------------------------------------------------------------- compare


class PairChoice(StrEnum):
    training_vs_cached = "training-vs-cached"
    recompute_vs_cached = "recompute-vs-cached"
    padded_vs_cached = "padded-vs-cached"
    shifted_vs_cached = "shifted-vs-cached"
    unmasked_vs_cached = "unmasked-vs-cached"


DEFAULT_PROMPT = "To be, or not to be, that is the question:"


@app.command("compare")
@exits_like_cmp
def compare_command(
    pair: Annotated[
        PairChoice,
        typer.Argument(
            metavar="PAIR",
            help="What to compare with cached decoding. training-vs-cached: one masked pass; recompute-vs-cached: the whole prefix at every step; padded-vs-cached: pads masked (--side); shifted-vs-cached: left pads counted in the positions; unmasked-vs-cached: one pass without the mask.",
            show_default=False,
        ),
    ],
    prompt: Annotated[str, typer.Option(help="Prompt to start from.")] = DEFAULT_PROMPT,
    steps: Annotated[int, typer.Option(help="Tokens to generate (greedy).")] = 16,
    side: Annotated[
        PadSide | None,
        typer.Option(
            help="padded-vs-cached only: pad after the prefix (right, the default) or before "
            "it (left: pads masked, position ids skip them).",
            show_default=False,
        ),
    ] = None,
    model: ModelOption = None,
    dtype: DTypeOption = DTypeChoice.float32,
    layer: LayerOption = 0,
    head: HeadOption = 0,
    plain: PlainOption = False,
    save: Annotated[
        Path | None,
        typer.Option(
            parser=output_path,
            metavar="<path>",
            help="Save a side-by-side figure (.png/.svg/.pdf): left, right, difference; or an interactive page of every layer and head (.html).",
            show_default=False,
        ),
    ] = None,
    dpi: DpiOption = None,
    width: ComparisonWidthOption = None,
    as_json: JsonOption = False,
) -> None:
    """Prove that cached decoding equals masked training, or show where a variant differs.

    Exit code (like cmp): 0 when both sides agree within the dtype's tolerance,
    1 when they differ, 2 for any trouble (bad options, a model that cannot be
    loaded, a file that cannot be written).

    Examples:

    maskviz compare training-vs-cached

    maskviz compare unmasked-vs-cached --steps 8 --save unmasked.png

    maskviz compare padded-vs-cached --side left --model tiny-swa

    maskviz compare recompute-vs-cached --json
    """
    from maskviz.compare import compare

    if side is not None and pair is not PairChoice.padded_vs_cached:
        raise usage_error(f"--side applies to padded-vs-cached, not {pair.value}")
    if steps < 1:
        raise usage_error(f"--steps must be >= 1, got {steps}")
    prompt = utf8(prompt, "--prompt").decode()
    if save is not None:
        save = check_output_path(save, FIGURE_OR_PAGE)
    _check_picture(dpi, width, save)
    sizes.check_width(width, _COMPARISON_LEAST, sizes.COMPARISON_PANELS)
    gpt = _load(model, dtype, layer, head)
    ids = gpt.tokenizer.encode(prompt)
    check_ids(ids, gpt.config.vocab_size)
    from maskviz.model import check_context

    check_context(len(ids), steps, gpt.config.n_ctx, min_steps=1, option="--steps")
    result = compare(gpt, pair.value, ids, steps, side=(side or PadSide.right).value)
    from maskviz.view import comparison_view

    view = comparison_view(result, layer=layer, head=head)
    page = functools.partial(_html().comparison_page, result, layer=layer, head=head)
    _show(view, result.to_dict(), plain=plain, as_json=as_json, save=save, dpi=dpi, width=width,
          page=page)  # fmt: skip
    if not result.agree:
        raise typer.Exit(code=1)


# ---------------------------------------------------------------- similarity


@app.command("similarity")
def similarity_command(
    text1: Annotated[str, typer.Argument(help="First text.", show_default=False)],
    text2: Annotated[str, typer.Argument(help="Second text.", show_default=False)],
    delimiter: Annotated[
        str, typer.Option(help="Token between the texts (must be one token).")
    ] = "$",
    model: ModelOption = None,
    dtype: DTypeOption = DTypeChoice.float32,
    layer: LayerOption = 0,
    head: HeadOption = 0,
    plain: PlainOption = False,
    save: Annotated[
        Path | None,
        typer.Option(
            parser=output_path,
            metavar="<path>",
            help="Save both orderings' attention (.png/.svg/.pdf), or an interactive page (.html).",
            show_default=False,
        ),
    ] = None,
    dpi: DpiOption = None,
    width: SimilarityWidthOption = None,
    as_json: JsonOption = False,
) -> None:
    """How a GPT scores a symmetric pair: both orderings, one masked pass each.

    Examples:

    maskviz similarity "a cat sat" "a dog sat"

    maskviz similarity "to be" "not to be" --save pair.png
    """
    from maskviz.similarity import similarity

    text1, text2, delimiter = (
        utf8(value, name).decode()
        for value, name in ((text1, "text1"), (text2, "text2"), (delimiter, "--delimiter"))
    )
    if save is not None:
        save = check_output_path(save, FIGURE_OR_PAGE)
    _check_picture(dpi, width, save)
    _check_panels(width, 2, shared_axes=False)  # the two orderings, each labelled
    gpt = _load(model, dtype, layer, head)
    result = similarity(gpt, text1, text2, delimiter)
    from maskviz.view import similarity_view

    view = similarity_view(result, layer=layer, head=head)
    page = functools.partial(_html().similarity_page, result, layer=layer, head=head)
    _show(view, result.to_dict(), plain=plain, as_json=as_json, save=save, dpi=dpi, width=width,
          page=page)  # fmt: skip


# ---------------------------------------------------------------- doctor


@app.command("doctor")
def doctor_command(
    plain: NoColourOption = False,
    as_json: JsonOption = False,
) -> None:
    """Print versions, BLAS, optional extras and where the shipped models live (for bug reports).

    Examples:

    maskviz doctor

    maskviz doctor --json > doctor.json
    """
    from maskviz.doctor import report
    from maskviz.render.terminal import KeyValues

    data = report()
    if as_json:
        print_json(data)
        return
    console(plain).print(KeyValues(data), crop=False)  # piped values stay whole


# ---------------------------------------------------------------- bench


class ShapeChoice(StrEnum):  # the names of `maskviz.bench.SHAPES`
    gpt2_small = "gpt2-small"
    gpt2_medium = "gpt2-medium"
    smollm2_135m = "smollm2-135m"


@app.command("bench")
def bench_command(
    model: ModelOption = None,
    shape: Annotated[
        ShapeChoice | None,
        typer.Option(
            metavar="<shape>",
            help="Instead of --model: a model of this shape with random weights: "
            + ", ".join(s.value for s in ShapeChoice)
            + ".",
            show_default=False,
        ),
    ] = None,
    tokens: Annotated[
        int | None,
        typer.Option(
            help="Sequence length: a 1-token prompt plus the decoded tokens (2 to 4096, "
            "at most the model's context; recompute grows with its square). "
            "Default: 128, or the model's context if shorter.",
            show_default=False,
        ),
    ] = None,
    repeats: Annotated[
        int, typer.Option(help="Runs of each measurement (1 to 100); medians are shown.")
    ] = 3,
    dtype: DTypeOption = DTypeChoice.float32,
    plain: NoColourOption = False,
    save: Annotated[
        Path | None,
        typer.Option(
            parser=output_path,
            metavar="<path>",
            help="Save per-step time against position, cached vs recompute (.png/.svg/.pdf).",
            show_default=False,
        ),
    ] = None,
    dpi: DpiOption = None,
    width: BenchWidthOption = None,
    as_json: JsonOption = False,
) -> None:
    """Time decoding with and without the KV cache, a training-mode pass, and the bandwidth bound.

    Shows tokens/s, ms and multiply-accumulates per token for each way of
    running, the cache's speedup, what recording attention costs, and how
    close cached decoding gets to the memory-bandwidth bound.

    Examples:

    maskviz bench

    maskviz bench --shape gpt2-small --tokens 64 --save latency.png

    maskviz bench --model tiny-swa --json
    """
    from maskviz import bench as bench_lib

    if model is not None and shape is not None:
        raise usage_error("--model and --shape cannot be combined")
    with _options_named("tokens", "repeats"):
        if tokens is not None:
            bench_lib.check_tokens(tokens)
        bench_lib.check_repeats(repeats)
    if save is not None:
        save = check_output_path(save, FIGURE_SUFFIXES)
    _check_picture(dpi, width, save)
    sizes.check_width(width, sizes.BENCH_LEAST, sizes.BENCH_PLOTS)
    if shape is not None:
        gpt = bench_lib.shape_model(shape.value, dtype=dtype.value)
    else:
        gpt = _load(model, dtype)
    if tokens is None:
        tokens = min(bench_lib.DEFAULT_TOKENS, gpt.config.n_ctx)
    with _options_named("tokens"):
        bench_lib.check_tokens(tokens, gpt.config.n_ctx)
    result = _bench_with_progress(gpt, tokens, repeats, plain=plain)
    if as_json:
        print_json(result.to_dict())
    else:
        from maskviz.render.terminal import bench_view

        console(plain).print(bench_view(result, bench_lib.describe_machine(result.machine)))
    if save is not None:
        from maskviz.render.bench_figures import latency_figure
        from maskviz.render.figures import save_figure

        save_figure(latency_figure(result, width=width), save, dpi=dpi)
        if not as_json:
            say_saved(save, plain)


def _bench_with_progress(gpt: GPT, tokens: int, repeats: int, *, plain: bool) -> BenchResult:
    """Run the benchmark with a progress bar on stderr (only when stderr is a terminal)."""
    from maskviz.bench import run

    with progress_bar("bench", "runs", plain=plain) as update:
        return run(
            gpt,
            tokens,
            repeats=repeats,
            progress=lambda what, done, total: update(done, total, what),
        )


def main() -> None:
    """Run the command line (`maskviz.__main__.main` loads it)."""
    run(app)
