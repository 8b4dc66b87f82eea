"""The ``maskviz`` command line: parse, call the library, pick a renderer.

Errors from the library (`MaskvizError`) and from argument parsing become one
line on stderr and an exit code (2 for usage errors), never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from maskviz import __version__
from maskviz import masks as masks_lib
from maskviz._io import check_output_path
from maskviz.errors import MaskvizError, usage_error
from maskviz.render.terminal import MaskGrid, legend, mask_summary

PROG = "maskviz"


def _fail(message: str, code: int) -> NoReturn:
    line = " ".join(str(message).split())
    sys.stderr.write(f"{PROG}: error: {line}\n")
    sys.stderr.flush()
    sys.exit(code)


class _Group(TyperGroup):
    """Runs a command and turns every failure into one line on stderr."""

    def main(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            rv = super().main(
                args=args,
                prog_name=prog_name or PROG,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
        except MaskvizError as exc:
            _fail(str(exc), exc.exit_code)
        except typer.TyperException as exc:  # argument parsing: usage errors exit 2
            _fail(exc.format_message(), exc.exit_code)
        except (KeyboardInterrupt, typer.Abort):
            _fail("interrupted", 130)
        except BrokenPipeError:
            sys.stderr = open(os.devnull, "w")  # noqa: SIM115  # nothing left to report to
            sys.exit(1)
        except Exception as exc:
            if os.environ.get("MASKVIZ_DEBUG"):
                raise
            _fail(
                f"internal error: {type(exc).__name__}: {exc} (set MASKVIZ_DEBUG=1 for details)", 1
            )
        code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=_Group,
    name=PROG,
    help="See and check how masked self-attention works in a GPT.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {__version__}")
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


def console(plain: bool) -> Console:
    """Stdout console: colour on a terminal, plain when piped, --plain or NO_COLOR."""
    plain = plain or bool(os.environ.get("NO_COLOR"))
    return Console(
        force_terminal=False if plain else None,
        no_color=plain or None,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=False,
    )


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=None, separators=(",", ":"), allow_nan=False))


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
DENSE_JSON_N = 1024


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
            help="Base pattern. causal: key <= query (GPT-2); strict: key < query; bidirectional: all; prefix-lm: needs --prefix.",
        ),
    ] = KindChoice.causal,
    window: Annotated[
        int | None,
        typer.Option(
            help="Sliding window W: each query sees the W keys ending at itself (W counts the query).",
            show_default=False,
        ),
    ] = None,
    prefix: Annotated[
        int | None,
        typer.Option(
            help="Prefix length P for --kind prefix-lm: positions < P see each other both ways.",
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
    plain: Annotated[
        bool, typer.Option("--plain", help="No colour (also when piped or NO_COLOR is set).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the mask as JSON instead of drawing it.")
    ] = False,
    save: Annotated[
        Path | None,
        typer.Option(
            help="Also save a heatmap: .png, .svg or .pdf (written atomically).", show_default=False
        ),
    ] = None,
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
    labels = text.split() if text is not None else None
    if labels is not None and len(labels) != n:
        raise usage_error(f"--text has {len(labels)} words but N is {n}")
    if save is not None:
        from maskviz.render.figures import FIGURE_SUFFIXES

        save = check_output_path(save, FIGURE_SUFFIXES)
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
    padded = _padded_rows(n, pad, pad_side.value)
    if as_json:
        print_json(_mask_json(mask, index_base, labels, padded))
    else:
        out = console(plain)
        out.print(f"{mask.description} mask, {n} queries x {n} keys (positions from {index_base})")
        out.print(MaskGrid(mask, labels=labels, index_base=index_base, highlight_row=highlight))
        out.print(legend())
        if highlight is not None:
            keys = mask.to_array()[highlight] if n <= 4096 else None
            seen = "" if keys is None else f"; allowed keys: {int(keys.sum())}"
            out.print(
                f"Step {step}: cached decoding computes only this row, one query at position "
                f"{step} against the keys held in the KV cache plus itself{seen}."
            )
        out.print(mask_summary(mask, index_base, padded))
    if save is not None:
        from maskviz.render.figures import mask_figure, save_figure

        save_figure(
            mask_figure(mask, labels=labels, index_base=index_base, highlight_row=highlight), save
        )
        if not as_json:
            console(plain).print(f"saved {save}")


def _padded_rows(n: int, pad: int | None, side: str) -> Any:
    import numpy as np

    if not pad:
        return None
    return np.arange(pad) if side == "left" else np.arange(n - pad, n)


def _mask_json(
    mask: masks_lib.Mask, index_base: int, labels: list[str] | None, padded: Any
) -> dict[str, Any]:
    s = mask.summary()
    data: dict[str, Any] = {
        "kind": mask.description,
        "n_queries": mask.n_queries,
        "n_keys": mask.n_keys,
        "index_base": index_base,
        "allowed": s.allowed,
        "density": s.density,
        "fully_masked_rows": [int(r) + index_base for r in s.fully_masked],
        "padded_rows": [] if padded is None else [int(r) + index_base for r in padded],
        "labels": labels,
    }
    if mask.n_keys <= DENSE_JSON_N:
        data["mask"] = mask.to_array().astype(int).tolist()
    else:
        k = -(-mask.n_keys // 256)
        data["cell_size"] = k
        data["cells"] = mask.blocks(k, k).tolist()
        data["cells_legend"] = {"0": "none allowed", "1": "some allowed", "2": "all allowed"}
    return data


def main() -> None:
    """Console-script entry point."""
    app()
