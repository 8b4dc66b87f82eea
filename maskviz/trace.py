"""A recorded run of the model: plain arrays with documented shapes, no drawing.

The fields, their shapes and how cached mode fills them: see `Trace`.
"""

from __future__ import annotations

import json
import math
import os
import tokenize
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from maskviz._io import as_path, atomic_path, check_output_path, write_text
from maskviz._text import plural
from maskviz.arch._config import MAX_SIZE as MAX_DIM  # no trace dimension exceeds a config's
from maskviz.errors import MaskvizError, as_integer, as_integers, first_line, usage_error
from maskviz.masks import sliding_window
from maskviz.tokenizer import ByteTokenizer, unknown_id_label

FloatArray = NDArray[np.floating[Any]]

# The file format's version, written since 0.2.2 ("format"; files without it are 1). It
# goes up only when a field's meaning changes, so that an older maskviz refuses such a
# file by name instead of reading it as the format it knows.
FORMAT = 1

_ARRAYS = ("token_ids", "logits", "attention", "mask", "layers", "heads", "step_seconds")
_NEWER_ARRAYS = ("windows", "positions", "label_ids", "label_texts")  # absent from 0.1.0 files
_SCALARS = {
    "prompt_len": int,
    "mode": str,
    "prefill_seconds": float,
    "kv_cache_bytes": int,
    "model_name": str,
    "dtype": str,
    "stop_reason": str,
}
# Scalars absent from traces written by maskviz 0.1.0 (sampling settings, step_masks,
# the labels' text): read with these defaults.
_OPTIONAL: dict[str, tuple[type, Any]] = {
    "temperature": (float, 0.0),
    "top_k": (int, None),
    "seed": (int, None),
    "step_masks": (int, 0),
    "model_desc": (str, ""),
    "text": (str, ""),
    "kv_formula": (str, ""),
}
# The optional scalars that may be None: .npz files store None as -1 (never a seed or top-k)
_NONE_AS_MINUS_ONE = ("top_k", "seed")
SUFFIXES = (".npz", ".json")
LABELLED_NEXT = 5  # next-token candidates per row whose labels a trace records
Mode = Literal["cached", "training", "recompute"]  # how the model ran (`maskviz.model.GPT.trace`)
MODES: tuple[Mode, ...] = get_args(Mode)
Agg = Literal["mean", "max"]  # how `Trace.layer_attention` combines a layer's heads
_FLOAT_DTYPES = ("float16", "float32", "float64")
_STOP_REASONS = ("steps", "end_of_text", "context")
MAX_SEED = 2**63 - 1  # saved as int64
# A recorded row sums to 1 up to rounding: float16 weights each round by at most 2^-11 of
# themselves, so their sum by at most 2^-11; this leaves room and catches real damage
_ROW_SUM_TOLERANCE = 1e-2


@dataclass(frozen=True, eq=False, repr=False)
class Trace:
    """What one run of the model computed, step by step: plain arrays, no drawing.

    ========================  ======================  ===========================================
    field                     dtype / shape           meaning
    ========================  ======================  ===========================================
    token_ids                 int64 [T]               prompt followed by generated tokens
    prompt_len                int                     P, the number of prompt tokens
    logits                    float [T, vocab]        logits[t] predicts token t+1
    attention                 float [L', H', T, T]    row t = attention of query t; 0 where masked
    mask                      bool [T, T]             the causal mask every layer starts from (True = allowed)
    mode                      str                     "cached", "training" or "recompute"
    layers, heads             int64 [L'], [H']        which layers/heads ``attention`` holds
    step_seconds              float64 [T - P]         wall time of each decoding step (empty: training)
    prefill_seconds           float                   wall time of the prompt pass (training: the whole pass)
    kv_cache_bytes            int                     bytes the KV cache held at the end (0 without a cache)
    model_name, dtype         str                     the model and its float dtype
    stop_reason               str                     "steps", "end_of_text" or "context"
    temperature               float                   0 = greedy decoding; > 0 = sampled
    top_k, seed               int or None             sampling settings (None: no top-k; greedy)
    windows                   int64 [L]               each layer's sliding window W (0 = full attention)
    positions                 int64 [T]               the position id of each token
    step_masks                int                     (layer, step) pairs of cached decoding that needed a mask
    label_ids, label_texts    int64 [M], str [M]      printable labels of the tokens drawing needs
                                                      (the sequence and each row's likeliest next tokens)
    model_desc                str                     the model's shape, e.g. "4 layers, 4 heads, ..."
    text                      str                     the sequence decoded by the model's tokenizer
    kv_formula                str                     how kv_cache_bytes add up (layers x 2 x heads x ...)
    ========================  ======================  ===========================================

    In cached mode, rows 0..P-1 come from the prefill pass (causal mask applied to
    the P x P scores) and each row t >= P from one decoding step in which the single
    query attends to the t+1 keys in the cache with no mask: ``mask[t]`` records the
    keys the cache held, which is the causal row. A layer with a sliding window W
    restricts that row to its W most recent keys (`Trace.layer_mask`): its ring-buffer
    cache held exactly those, the earlier ones evicted. Fields added after 0.1.0
    (sampling settings, windows, positions, step_masks, labels, model_desc, text,
    kv_formula, and the recording's own attention dtype) take their defaults when a
    file from 0.1.0 is read: greedy, full attention, positions 0..T-1, 0, no labels
    (the shipped byte-level model's are derived), "", and the model's dtype.

    >>> import tempfile, pathlib
    >>> from maskviz import load_model
    >>> tiny = load_model("tiny")
    >>> trace = tiny.trace(tiny.tokenizer.encode("To be"), steps=3)
    >>> trace.n_tokens, trace.prompt_len, trace.labels[:2]
    (8, 5, ['T', 'o'])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.npz"
    >>> trace.save(path)  # atomically; .json for a readable file
    >>> bool(np.array_equal(Trace.load(path).attention, trace.attention))
    True
    """

    token_ids: NDArray[np.int64]
    prompt_len: int
    logits: FloatArray
    attention: FloatArray
    mask: NDArray[np.bool_]
    mode: str
    layers: NDArray[np.int64]
    heads: NDArray[np.int64]
    model_name: str = ""
    dtype: str = "float32"
    step_seconds: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    prefill_seconds: float = 0.0
    kv_cache_bytes: int = 0
    stop_reason: str = "steps"
    temperature: float = 0.0
    top_k: int | None = None
    seed: int | None = None
    windows: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    positions: NDArray[np.int64] | None = None  # None: 0..T-1
    step_masks: int = 0
    label_ids: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    label_texts: NDArray[np.str_] = field(default_factory=lambda: np.zeros(0, "<U1"))
    model_desc: str = ""
    text: str = ""  # the sequence decoded by the model's tokenizer
    kv_formula: str = ""  # how kv_cache_bytes add up, e.g. "4 layers x 2 (keys, values) x ..."

    def __post_init__(self) -> None:
        if self.positions is None:
            given = self.token_ids  # of any shape here: _validate names what is wrong
            n = len(given) if isinstance(given, np.ndarray) and given.ndim else 0
            object.__setattr__(self, "positions", np.arange(n, dtype=np.int64))
        _validate(self)
        for name in (*_ARRAYS, *_NEWER_ARRAYS):  # read-only views: a trace is a record
            value = getattr(self, name)
            if value.dtype.kind == "i":  # ids and indices are int64, as documented
                value = value.astype(np.int64, copy=False)
            view = value.view()
            view.flags.writeable = False
            object.__setattr__(self, name, view)
        if not self.text:  # a 0.1.0 file: the shipped model's bytes, else the labels
            byte_level = self.logits.shape[1] == ByteTokenizer.vocab_size
            ids = [int(i) for i in self.token_ids]
            text = ByteTokenizer().decode(ids) if byte_level else "".join(self.labels)
            object.__setattr__(self, "text", text)

    def __repr__(self) -> str:
        name = f" of {self.model_name}" if self.model_name else ""
        return (
            f"<Trace{name}: {self.mode}, {self.n_tokens} tokens (prompt {self.prompt_len}), "
            f"layers {self.layers.tolist()}, heads {self.heads.tolist()}, {self.dtype}>"
        )

    @property
    def n_tokens(self) -> int:
        return int(self.token_ids.shape[0])

    @property
    def generated_ids(self) -> list[int]:
        return [int(i) for i in self.token_ids[self.prompt_len :]]

    def head_attention(self, layer: int, head: int) -> FloatArray:
        """The T x T attention of one recorded (layer, head), by model indices."""
        layer, head = as_integer(layer, "layer"), as_integer(head, "head")  # True is not 1
        try:
            li = int(np.flatnonzero(self.layers == layer)[0])
            hi = int(np.flatnonzero(self.heads == head)[0])
        except IndexError:
            raise MaskvizError(
                f"layer {layer}, head {head} was not recorded "
                f"(layers {self.layers.tolist()}, heads {self.heads.tolist()})",
                usage=True,
            ) from None
        matrix: FloatArray = self.attention[li, hi]
        return matrix

    def layer_attention(self, layer: int, agg: Agg) -> FloatArray:
        """The T x T attention of one layer aggregated over its recorded heads.

        ``agg`` is "mean" or "max"; masked cells stay exactly 0 either way.
        """
        layer = as_integer(layer, "layer")  # True is not 1
        hits = np.flatnonzero(self.layers == layer)
        if hits.size == 0:
            raise MaskvizError(
                f"layer {layer} was not recorded (layers {self.layers.tolist()})", usage=True
            )
        heads = self.attention[int(hits[0])]  # [H', T, T]
        if agg == "mean":
            out: FloatArray = heads.mean(axis=0)
        elif agg == "max":
            out = heads.max(axis=0)
        else:
            raise MaskvizError(f"agg must be 'mean' or 'max', got {agg!r}", usage=True)
        return out

    def token_label(self, token_id: int) -> str:
        """A printable label of a token: recorded by the run, else derived for the shipped
        byte-level model (traces from 0.1.0), else the id itself, as `<id:N>`."""
        token_id = as_integer(token_id, "token id")
        vocab = self.logits.shape[1]
        if not 0 <= token_id < vocab:
            raise usage_error(f"token id {token_id} is outside the vocabulary 0..{vocab - 1}")
        hits = np.flatnonzero(self.label_ids == token_id)
        if hits.size:
            return str(self.label_texts[int(hits[0])])
        if self.logits.shape[1] == ByteTokenizer.vocab_size:
            return ByteTokenizer().token_label(token_id)
        return unknown_id_label(token_id)  # as a tokenizer labels an id it lacks

    @property
    def labels(self) -> list[str]:
        """The label of every position's token [T]."""
        return [self.token_label(int(i)) for i in self.token_ids]

    @property
    def _n_layer(self) -> int:
        """The model's layers as far as the trace knows them: every layer's window is
        recorded, but files from 0.1.0 only name the layers they recorded."""
        if self.windows.shape[0] or not self.layers.size:
            return int(self.windows.shape[0])
        return int(self.layers.max()) + 1

    def _layer(self, layer: int) -> int:
        """``layer`` checked against the model's layers (0-based; negative ones are
        refused, as everywhere layers are named)."""
        index = as_integer(layer, "layer")
        if not 0 <= index < self._n_layer:
            known = f"0..{self._n_layer - 1}" if self._n_layer else "none"
            raise usage_error(f"layer {layer} is not a layer of the trace's model (layers {known})")
        return index

    def window(self, layer: int) -> int | None:
        """The sliding window W of a model layer, or None for full attention."""
        return self._window(self._layer(layer))

    def _window(self, layer: int) -> int | None:
        w = int(self.windows[layer]) if layer < self.windows.shape[0] else 0  # 0.1.0: full
        return w or None

    def layer_mask(self, layer: int) -> NDArray[np.bool_]:
        """The keys each query of ``layer`` could see [T, T]: ``mask``, restricted to the
        layer's sliding window if it has one. Always a new array: writing to it leaves
        the trace as it was."""
        return self._layer_mask(self._layer(layer))

    def _layer_mask(self, layer: int) -> NDArray[np.bool_]:
        w = self._window(layer)
        if w is None:
            return self.mask.copy()
        out: NDArray[np.bool_] = self.mask & sliding_window(self.n_tokens, w).to_array()
        return out

    @property
    def decoding(self) -> str:
        """How tokens were chosen, enough to replay the run: "greedy" or the sampling settings.

        >>> Trace(np.array([1]), 1, np.zeros((1, 2), np.float32), np.zeros((0, 0, 1, 1)),
        ...       np.ones((1, 1), bool), "cached", np.zeros(0, np.int64), np.zeros(0, np.int64),
        ...       temperature=0.8, seed=7).decoding
        'sampled: temperature 0.8, seed 7'
        """
        if self.temperature == 0:
            return "greedy"
        top_k = "" if self.top_k is None else f", top-k {self.top_k}"
        return f"sampled: temperature {self.temperature:g}{top_k}, seed {self.seed}"

    def probabilities(self, t: int) -> NDArray[np.float64]:
        """softmax(logits[t]) in float64 [vocab]: the distribution of token t+1."""
        position = as_integer(t, "position")
        if not 0 <= position < self.n_tokens:
            raise usage_error(f"position {t} is outside 0..{self.n_tokens - 1}, the trace's tokens")
        z = self.logits[position].astype(np.float64)
        p = np.exp(z - z.max())
        out: NDArray[np.float64] = p / p.sum()
        return out

    def next_token_probs(self, t: int, k: int = LABELLED_NEXT) -> list[tuple[int, float]]:
        """The ``k`` most likely tokens after position ``t`` with their probabilities
        (the whole vocabulary when it holds fewer; by default as many as the trace
        records labels of)."""
        k = as_integer(k, "k")
        if k < 1:
            raise usage_error(f"k must be >= 1, got {k}")
        p = self.probabilities(t)
        top = np.argsort(-p, kind="stable")[:k]
        return [(int(i), float(p[i])) for i in top]

    def _repr_html_(self) -> str | None:
        """A notebook shows the interactive viewer: every recorded layer and head."""
        from maskviz.render.html import repr_html, trace_page

        return repr_html(lambda: trace_page(self))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content: the same keys as the .npz file, arrays as lists."""
        out: dict[str, Any] = {
            name: _json_ready(getattr(self, name)) for name in (*_ARRAYS, *_NEWER_ARRAYS)
        }
        out.update({name: getattr(self, name) for name in (*_SCALARS, *_OPTIONAL)})
        # the recording's own dtype (it may differ from the model's), so that a file
        # read back holds the very same values
        out["attention_dtype"] = str(self.attention.dtype)
        out["format"] = FORMAT
        return out

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the trace atomically: ``.npz`` (no pickle) or ``.json``, by the suffix."""
        p = check_output_path(path, SUFFIXES)  # never an .npz under another name
        if p.suffix.lower() == ".json":
            # every value is finite (checked when the trace was made): strict JSON
            write_text(p, json.dumps(self.to_dict(), allow_nan=False))
            return
        arrays = {name: getattr(self, name) for name in (*_ARRAYS, *_NEWER_ARRAYS)}
        arrays.update({name: np.array(getattr(self, name)) for name in _SCALARS})
        for name in _OPTIONAL:
            value = getattr(self, name)
            arrays[name] = np.array(-1 if value is None else value)
        arrays["format"] = np.array(FORMAT)
        with atomic_path(p) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Trace:
        """Read a trace written by `save` (.npz or .json); any defect is a MaskvizError
        naming the file and the field: a value of the wrong type (3.7 for an integer is
        never read as 3), an array of the wrong shape (ragged, nested too deep, a single
        value), or attention that is not what a model computes (weight on a key the
        layer's mask hides, a row that is not a distribution)."""
        p = as_path(path)
        if p.suffix.lower() not in SUFFIXES:
            raise usage_error(f"{p}: not a trace file: traces are .npz or .json files")
        try:
            folder, regular, exists = p.is_dir(), p.is_file(), p.exists()
        except OSError as exc:  # e.g. a name longer than the file system allows
            raise MaskvizError(f"{p}: cannot read trace: {exc.strerror or exc}") from None
        if folder:
            raise MaskvizError(f"{p}: is a folder, not a trace file")
        if not regular:  # a pipe would never end, a device never be a trace
            raise MaskvizError(f"{p}: {'not a regular file' if exists else 'no such file'}")
        try:
            if p.suffix.lower() == ".json":
                data = json.loads(p.read_text(encoding="utf-8"))
                if not isinstance(data, dict):
                    raise MaskvizError(f"{p}: not a trace (expected a JSON object)")
                arrays = _from_json(data, p)
            else:
                arrays = _read_npz(p)
            _check_format(arrays.get("format", 1), p)
            kwargs: dict[str, Any] = {name: arrays[name] for name in _ARRAYS}
            kwargs.update({name: arrays[name] for name in _NEWER_ARRAYS if name in arrays})
            # values as read: the Trace checks their types (an int field never truncates 3.7)
            kwargs.update({name: _one(arrays[name], name, p) for name in _SCALARS})
            for name, (_, default) in _OPTIONAL.items():
                value = _one(arrays.get(name, default), name, p)
                minus_one = type(value) is int and value == -1
                kwargs[name] = None if name in _NONE_AS_MINUS_ONE and minus_one else value
        except MaskvizError:
            raise
        except KeyError as exc:
            raise MaskvizError(f"{p}: not a trace: missing key {exc}") from None
        except MemoryError:
            raise MaskvizError(f"{p}: not enough memory to read this trace") from None
        except zipfile.BadZipFile:
            raise MaskvizError(f"{p}: not a trace: not an .npz (zip) archive") from None
        except zlib.error:  # a damaged compressed member: its CRC is never reached
            raise MaskvizError(f"{p}: cannot read trace: damaged compressed data") from None
        except json.JSONDecodeError as exc:
            raise MaskvizError(
                f"{p}: not a trace: not valid JSON ({exc.msg}, line {exc.lineno})"
            ) from None
        except UnicodeDecodeError as exc:  # a picture or an archive named .json
            raise MaskvizError(
                f"{p}: not a trace: not JSON text (byte 0x{exc.object[exc.start]:02x} at "
                f"offset {exc.start} is not UTF-8)"
            ) from None
        except OSError as exc:
            raise MaskvizError(f"{p}: cannot read trace: {exc.strerror or exc}") from None
        except _UNREADABLE as exc:
            raise MaskvizError(f"{p}: cannot read trace: {first_line(exc)}") from None
        try:
            return cls(**kwargs)
        except MaskvizError as exc:
            raise MaskvizError(f"{p}: {exc}") from None
        except _UNREADABLE as exc:  # a field whose type or size nothing above expected
            raise MaskvizError(f"{p}: invalid trace: {first_line(exc)}") from None


# What a damaged or hostile file can make reading or checking it raise: a number too
# large for its field, nesting too deep, a zip feature Python lacks, a scalar for a list
_UNREADABLE = (
    OSError, ValueError, TypeError, OverflowError, IndexError, RecursionError, EOFError,
    RuntimeError, NotImplementedError, zipfile.BadZipFile,
)  # fmt: skip


def _check_format(value: Any, path: Path) -> None:
    """Refuse a file whose format this version does not know (see `FORMAT`)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if type(value) is not int or value < 1:
        raise MaskvizError(f"{path}: invalid trace: format must be an integer >= 1, got {value!r}")
    if value > FORMAT:
        raise MaskvizError(
            f"{path}: written by a newer maskviz (trace format {value}; this version reads "
            f"format {FORMAT}): upgrade maskviz to open it"
        )


def _one(value: Any, name: str, path: Path) -> Any:
    """A scalar field's value as read: a 0-D array's item; an array of values is refused
    (NumPy's item() would only say it cannot convert it)."""
    if isinstance(value, list | np.ndarray) and np.ndim(value):
        kind = _SCALARS[name] if name in _SCALARS else _OPTIONAL[name][0]
        what = {int: "integer", float: "number", str: "string"}[kind]
        size = value.size if isinstance(value, np.ndarray) else len(value)
        raise MaskvizError(
            f"{path}: invalid trace: '{name}' must be one {what}, not an array of {size}"
        )
    return value.item() if isinstance(value, np.ndarray) else value


# The values each array field holds (a NumPy dtype kind) and its axes, as documented above
_FIELDS: dict[str, tuple[str, str]] = {
    "token_ids": ("i", "T"),
    "logits": ("f", "T, vocab"),
    "attention": ("f", "L', H', T, T"),
    "mask": ("b", "T, T"),
    "layers": ("i", "L'"),
    "heads": ("i", "H'"),
    "step_seconds": ("f", "T - P"),
    "windows": ("i", "L"),
    "positions": ("i", "T"),
    "label_ids": ("i", "M"),
    "label_texts": ("U", "M"),
}
_WANTED = {"i": "integers", "f": "floating-point numbers", "b": "true/false values", "U": "text"}
_HELD = {
    "b": "true/false values", "i": "integers", "u": "unsigned integers", "f": "decimal numbers",
    "c": "complex numbers", "U": "text", "S": "bytes", "O": "null or mixed values",
}  # fmt: skip


def _dims(name: str) -> int:
    return _FIELDS[name][1].count(",") + 1


def _shape_problem(name: str, ndim: int) -> str | None:
    """What is wrong with an array field of ``ndim`` dimensions, in words, or None."""
    axes = _FIELDS[name][1]
    if ndim == 0:
        return f"'{name}' must be an array [{axes}], not a single value"
    if ndim != _dims(name):
        return f"'{name}' must have {plural(_dims(name), 'dimension')} [{axes}], not {ndim}"
    return None


def _array_problem(name: str, value: object) -> str | None:
    """What is wrong with an array field's value, in words, or None: not an array, the
    wrong number of dimensions, or values of the wrong kind."""
    if not isinstance(value, np.ndarray):
        return f"'{name}' must be a NumPy array [{_FIELDS[name][1]}], got {type(value).__name__}"
    problem = _shape_problem(name, value.ndim)
    want, kind = _FIELDS[name][0], value.dtype.kind
    if problem is None and kind != want:
        held = _HELD.get(kind, str(value.dtype))
        if want in "bU" and kind in "iufc":
            held = "numbers"  # to a mask or a label, 0/1 and 0.0/1.0 are alike wrong
        problem = f"'{name}' must hold {_WANTED[want]}, not {held}"
    return problem


def _read_npz(path: Path) -> dict[str, Any]:
    """Read the .npz members after checking every header's dtype, size and shape."""
    total = 0
    out: dict[str, Any] = {}
    declared_as: dict[str, NDArray[Any]] = {}
    with zipfile.ZipFile(path) as zf:
        names = {info.filename.removesuffix(".npy"): info for info in zf.infolist()}
        for name in (*_ARRAYS, *_SCALARS):
            if name not in names:
                raise MaskvizError(f"{path}: not a trace: missing key '{name}'")
        newer = (*_NEWER_ARRAYS, *_OPTIONAL, "format")
        members = [*_ARRAYS, *_SCALARS, *(o for o in newer if o in names)]
        for name in members:
            with zf.open(names[name]) as fh:
                try:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                except (ValueError, SyntaxError, tokenize.TokenError):
                    raise MaskvizError(f"{path}: '{name}' has a damaged array header") from None
                if dtype.hasobject:
                    raise MaskvizError(
                        f"{path}: '{name}' holds Python objects; refused (no pickle)"
                    )
                declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if declared > names[name].file_size:
                    raise MaskvizError(
                        f"{path}: '{name}' declares {declared} bytes but holds fewer"
                    )
                if any(size > MAX_DIM for size in shape):
                    raise MaskvizError(
                        f"{path}: '{name}' declares shape {list(shape)}; no dimension of a "
                        f"trace exceeds {MAX_DIM:,}"
                    )
                # the header's shape and dtype without its bytes (one value, broadcast)
                declared_as[name] = np.broadcast_to(np.zeros((), dtype), shape)
                total += declared
        # shapes that disagree, refused before reading; other defects as the Trace says them
        fields_ok = not any(_array_problem(n, a) for n, a in declared_as.items() if n in _FIELDS)
        problem = (
            _shapes_problem({n: a.shape for n, a in declared_as.items()}) if fields_ok else None
        )
        if problem:
            raise MaskvizError(f"{path}: invalid trace: {problem}")
        # zeros compress a thousandfold: the members' declared sizes are what reading costs
        if total > _memory_bytes():
            raise MaskvizError(
                f"{path}: its arrays declare {total / 2**30:.1f} GiB, more than this machine's memory"
            )
        for name in members:
            with zf.open(names[name]) as fh:
                out[name] = np.lib.format.read_array(fh, allow_pickle=False)
    return out


def _memory_bytes() -> int:
    """Physical memory, or no limit where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 1 << 62


def _json_ready(a: NDArray[Any]) -> Any:
    """Nested lists; float16/float32 values as their shortest decimals in that dtype.

    A float32 0.1 is written "0.1", not float64's "0.10000000149011612": reading it back
    as float32 gives the same number, and a recorded trace's file is a third smaller.
    """
    if a.dtype in (np.float16, np.float32):
        a = a.astype(str).astype(np.float64)  # NumPy prints each dtype's shortest round trip
    return a.tolist()


def _from_json(data: dict[str, Any], path: Path) -> dict[str, Any]:
    dtype = str(data["dtype"])
    if dtype not in _FLOAT_DTYPES:
        raise MaskvizError(f"{path}: unknown dtype {dtype!r}")
    recorded = str(data.get("attention_dtype", dtype))  # absent before 0.2.1: the model's
    if recorded not in _FLOAT_DTYPES:
        raise MaskvizError(f"{path}: unknown attention_dtype {recorded!r}")
    floats = {"logits": dtype, "attention": recorded, "step_seconds": "float64"}
    out: dict[str, Any] = dict(data)
    for name in _FIELDS:
        if name in _ARRAYS or name in data:  # a missing required key: KeyError, named
            out[name] = _json_array(data[name], name, floats.get(name, ""), path)
    # JSON writes an empty recording [L', H', T, T] as [] (or [[], ...]): the shape is lost
    n = len(out["token_ids"])
    shape = (len(out["layers"]), len(out["heads"]), n, n)
    if out["attention"].size == 0 and out["attention"].shape != shape:
        if math.prod(shape):
            raise MaskvizError(
                f"{path}: invalid trace: 'attention' holds 0 numbers; a trace of "
                f"{plural(shape[0], 'layer')}, {plural(shape[1], 'head')} and "
                f"{plural(n, 'token')} needs {' x '.join(map(str, shape))}"
            )
        out["attention"] = out["attention"].reshape(shape)
    return out


def _json_array(value: Any, name: str, dtype: str, path: Path) -> NDArray[Any]:
    """A JSON array field as an array of its dtype, refused naming the field when it is
    ragged, a single value, nested too deep, or holds values of the wrong kind."""

    def bad(message: str) -> MaskvizError:
        return MaskvizError(f"{path}: invalid trace: {message}")

    depth, first = 0, value  # the nesting along first elements: the dimensions, if rectangular
    while isinstance(first, list):
        depth, first = depth + 1, first[0] if first else None
    if depth > _dims(name):  # refused before NumPy, which stops at 64 dimensions
        raise bad(str(_shape_problem(name, depth)))
    try:
        a = np.asarray(value)  # JSON's own types: bool, int64, float64, str; object: null, mixed
    except ValueError:  # NumPy: "inhomogeneous shape"
        raise bad(f"'{name}' is not a rectangular array (rows of different lengths)") from None
    problem = _shape_problem(name, a.ndim) if a.size else None  # [] for [0, ...]: see above
    if problem:
        raise bad(problem)
    kind = _FIELDS[name][0]
    if kind == "i":  # element by element: NumPy reads [true, 2.0] as [1, 2] when mixed
        try:
            ints = as_integers(value, name)
        except MaskvizError as exc:  # a damaged file, not a usage error
            raise bad(str(exc)) from None
        big = [i for i in ints if not -(2**63) <= i < 2**63]
        if big:
            raise bad(f"'{name}' holds {big[0]}, too large for a 64-bit integer")
        return np.asarray(ints, dtype=np.int64)
    if kind == "f" and a.dtype.kind in "iuf":
        with np.errstate(over="ignore"):  # out-of-range numbers become inf, refused by _validate
            return a.astype(dtype)
    if kind == "U" == a.dtype.kind and not all(isinstance(x, str) for x in value):
        return np.asarray(value, dtype=object)  # NumPy reads [1, "a"] as text: _validate refuses
    return a  # true/false as read; of another kind, refused by _validate naming it


def _shapes_problem(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """What is wrong with the shapes of the token ids, logits, attention and mask, or
    None; each has the dimensions `_array_problem` asks for. Checked from a file's array
    headers before any array is read (zeros compress a thousandfold: a small file can
    declare gigabytes), and on every Trace."""
    (n,), logits = shapes["token_ids"], shapes["logits"]
    if n < 1:
        return "'token_ids' must be a non-empty 1-D array"
    if logits[0] != n:
        return f"'logits' must be [T={n}, vocab], got {list(logits)}"
    expected = (shapes["layers"][0], shapes["heads"][0], n, n)
    if shapes["attention"] != expected:
        return f"'attention' must be {list(expected)}, got {list(shapes['attention'])}"
    if shapes["mask"] != (n, n):
        return f"'mask' must be [{n}, {n}], got {list(shapes['mask'])}"
    return None


def _validate(t: Trace) -> None:
    def bad(message: str) -> MaskvizError:
        return MaskvizError(f"invalid trace: {message}")

    _check_scalars(t, bad)  # first: the checks below compare them as numbers
    for name in _FIELDS:
        problem = _array_problem(name, getattr(t, name))
        if problem:
            raise bad(problem)
    problem = _shapes_problem({name: getattr(t, name).shape for name in _ARRAYS})
    if problem:
        raise bad(problem)
    n, vocab = t.logits.shape
    if not 1 <= t.prompt_len <= n:
        raise bad(f"prompt_len {t.prompt_len} is outside 1..{n}")
    for name in ("token_ids", "label_ids"):
        ids = getattr(t, name)
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise bad(f"'{name}' must lie in 0..{vocab - 1} (the logits' vocabulary)")
    if not np.isfinite(t.logits).all():
        raise bad("'logits' must be finite (no NaN or inf)")
    if t.attention.size and not (t.attention.min() >= 0 and t.attention.max() <= 1):
        raise bad("'attention' weights must lie in 0..1 (no NaN or inf)")
    if not np.array_equal(t.mask, np.tri(n, dtype=bool)):  # what every run starts from
        raise bad("'mask' must be the causal mask (query t sees keys 0..t)")
    if t.positions is None or t.positions.shape != (n,) or (t.positions < 0).any():
        raise bad(f"'positions' must be {n} integers >= 0")
    if t.windows.ndim != 1 or (t.windows < 0).any():
        raise bad("'windows' must be a 1-D array of integers >= 0")
    for name in ("layers", "heads"):
        index = getattr(t, name)
        if index.ndim != 1 or (index < 0).any() or np.unique(index).size != index.size:
            raise bad(f"'{name}' must be distinct integers >= 0")
    n_layer = t.windows.shape[0]  # 0 in 0.1.0 files, which do not record it
    if n_layer and t.layers.size and t.layers.max() >= n_layer:
        raise bad(f"'layers' names layer {t.layers.max()} of a model with {n_layer}")
    if t.label_ids.ndim != 1 or t.label_ids.shape != t.label_texts.shape:
        raise bad("'label_ids' and 'label_texts' must be 1-D and of one length")
    if t.mode not in MODES:
        raise bad(f"mode must be one of {', '.join(MODES)}, got {t.mode!r}")
    if t.dtype not in _FLOAT_DTYPES:
        raise bad(f"unknown dtype {t.dtype!r}")
    if t.logits.dtype.name not in _FLOAT_DTYPES or t.attention.dtype.name not in _FLOAT_DTYPES:
        raise bad(f"'logits' and 'attention' must be {', '.join(_FLOAT_DTYPES)}")
    if t.logits.dtype.name != t.dtype:  # the model's dtype (attention may be recorded in another)
        raise bad(f"'logits' are {t.logits.dtype.name} but dtype says {t.dtype}")
    if t.step_seconds.ndim != 1 or not (np.isfinite(t.step_seconds) & (t.step_seconds >= 0)).all():
        raise bad("'step_seconds' must be a 1-D array of finite times >= 0")
    steps = 0 if t.mode == "training" else n - t.prompt_len  # a training pass has no steps
    if t.step_seconds.shape[0] not in (0, steps):  # none: a trace made without timing
        raise bad(
            f"'step_seconds' must hold {steps} times (one per decoding step) or none, "
            f"got {t.step_seconds.shape[0]}"
        )
    if not (math.isfinite(t.prefill_seconds) and t.prefill_seconds >= 0):
        raise bad(f"prefill_seconds must be a finite time >= 0, got {t.prefill_seconds}")
    if t.stop_reason not in _STOP_REASONS:
        raise bad(f"stop_reason must be one of {', '.join(_STOP_REASONS)}, got {t.stop_reason!r}")
    if not (math.isfinite(t.temperature) and t.temperature >= 0):
        raise bad(f"temperature must be >= 0, got {t.temperature}")
    if t.top_k is not None and t.top_k < 1:
        raise bad(f"top_k must be >= 1, got {t.top_k}")
    if t.seed is not None and not 0 <= t.seed <= MAX_SEED:
        raise bad(f"seed must be from 0 to {MAX_SEED}, got {t.seed}")
    if t.temperature == 0 and (t.top_k is not None or t.seed is not None):
        raise bad("top_k and seed belong to sampling: greedy decoding (temperature 0) has none")
    if t.kv_cache_bytes < 0:
        raise bad(f"kv_cache_bytes must be >= 0, got {t.kv_cache_bytes}")
    if t.step_masks < 0:
        raise bad(f"step_masks must be >= 0, got {t.step_masks}")
    _check_masked_weights(t, bad)


def _check_scalars(t: Trace, bad: Callable[[str], MaskvizError]) -> None:
    """Each scalar of its documented type, NumPy scalars stored as the Python ones: a file
    holding 3.7 for an integer or true for a seed is refused, not read as 3 or 1."""
    for name, kind in (*_SCALARS.items(), *((k, kind) for k, (kind, _) in _OPTIONAL.items())):
        value = getattr(t, name)
        if value is None and name in _NONE_AS_MINUS_ONE:
            continue
        if kind is int:
            try:
                value = as_integer(value, name)
            except MaskvizError:
                raise bad(f"{name} must be an integer, got {value!r}") from None
        elif kind is float:
            if isinstance(value, bool | np.bool_) or not isinstance(value, Real):
                raise bad(f"{name} must be a number, got {value!r}")
            value = float(value)
        elif isinstance(value, str):
            value = str(value)  # a NumPy string too
        else:
            raise bad(f"{name} must be a string, got {value!r}")
        object.__setattr__(t, name, value)


def _check_masked_weights(t: Trace, bad: Callable[[str], MaskvizError]) -> None:
    """The documented invariant: each recorded layer puts weight only on keys its mask
    allows, and each row's weights are a distribution (all 0: a row attending to nothing).
    A file breaking it would be drawn as attention the model never paid."""
    for li, layer in enumerate(int(x) for x in t.layers):
        weights = t.attention[li]  # [H', T, T]
        hidden = (weights != 0) & ~t._layer_mask(layer)
        if hidden.any():
            h, q, k = (int(i) for i in np.argwhere(hidden)[0])
            raise bad(
                f"'attention' of layer {layer}, head {int(t.heads[h])} puts weight on key {k} "
                f"for query {q}, which the layer's mask hides (masked weights must be 0)"
            )
        sums = weights.sum(axis=-1, dtype=np.float64)  # [H', T]
        off = (np.abs(sums - 1) > _ROW_SUM_TOLERANCE) & (sums != 0)
        if off.any():
            h, q = (int(i) for i in np.argwhere(off)[0])
            raise bad(
                f"'attention' of layer {layer}, head {int(t.heads[h])}, query {q} sums to "
                f"{sums[h, q]:.4g}, not 1"
            )
