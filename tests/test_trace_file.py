"""Trace files: lossless .npz/.json round trips, and clear errors for damaged files."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from maskviz import GPTConfig, LlamaConfig, MaskvizError, Trace, load_model, random_model


@pytest.fixture
def trace() -> Trace:
    return random_model(GPTConfig(2, 2, 8, 16, 20), seed=4).trace([1, 2, 3], steps=5)


def assert_same(a: Trace, b: Trace) -> None:
    for name in ("token_ids", "logits", "attention", "mask", "layers", "heads", "step_seconds"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    for name in (
        "prompt_len",
        "mode",
        "model_name",
        "dtype",
        "kv_cache_bytes",
        "prefill_seconds",
        "stop_reason",
    ):
        assert getattr(a, name) == getattr(b, name), name


@pytest.mark.parametrize("suffix", [".npz", ".json"])
@pytest.mark.parametrize(
    ("dtype", "recording"),
    [("float32", {"record_dtype": "float16"}), ("float32", {"record_dtype": "float64"}),
     ("float64", {"record_dtype": "float32"}), ("float32", {"layers": []}),
     ("float32", {"record": False})],
)  # fmt: skip
def test_every_recording_round_trips_with_its_dtype_and_shape(
    tmp_path: Path, suffix: str, dtype: str, recording: dict[str, object]
) -> None:
    model = random_model(GPTConfig(2, 2, 8, 16, 20), seed=4, dtype=dtype)  # type: ignore[arg-type]
    saved = model.trace([1, 2, 3], steps=3, **recording)  # type: ignore[arg-type]
    saved.save(tmp_path / f"t{suffix}")
    assert_same(saved, Trace.load(tmp_path / f"t{suffix}"))


def test_a_trace_is_read_only_so_what_it_recorded_cannot_change(trace: Trace) -> None:
    before = trace.attention.copy()
    for write in (
        lambda: trace.logits.__setitem__((0, 0), np.inf),
        lambda: trace.head_attention(0, 0).__setitem__((0, 0), 5.0),
        lambda: trace.windows.__setitem__(0, 1),
    ):
        with pytest.raises(ValueError, match="read-only"):
            write()
    np.testing.assert_array_equal(trace.attention, before)


def test_ids_and_indices_of_any_integer_width_are_kept_as_int64(trace: Trace) -> None:
    narrow = {name: getattr(trace, name).astype(np.int32) for name in ("token_ids", "layers")}
    rebuilt = dataclasses.replace(trace, **narrow)
    assert rebuilt.token_ids.dtype == rebuilt.layers.dtype == np.int64
    np.testing.assert_array_equal(rebuilt.token_ids, trace.token_ids)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_round_trip_is_exact(trace: Trace, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"t{suffix}"
    trace.save(path)
    assert_same(trace, Trace.load(path))


_TRACE = random_model(GPTConfig(2, 2, 8, 16, 20), seed=4).trace([1, 2, 3], steps=5)


@settings(max_examples=60)
@given(
    logits=hnp.arrays(np.float32, _TRACE.logits.shape, elements=st.floats(width=32)),
    dtype=st.sampled_from(["float16", "float32"]),
)
def test_json_numbers_are_shortest_decimals_that_read_back_to_the_same_values(
    logits: np.ndarray, dtype: str
) -> None:
    # every finite value, subnormals and extremes included, in each narrow dtype
    with np.errstate(over="ignore"):
        values = logits.astype(dtype)
    values[~np.isfinite(values)] = 0
    trace = dataclasses.replace(_TRACE, logits=values, dtype=dtype)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.json"
        trace.save(path)
        assert_same(trace, Trace.load(path))
        written = json.loads(path.read_text())["logits"]
    for x in (x for row in written for x in row):  # no digits beyond what the dtype holds
        assert _digits(json.dumps(x)) == _digits(str(np.array(x, dtype))), x


def _digits(number: str) -> str:
    """The significant digits of a decimal: "-1.70e+09" and "1700000000.0" give "17"."""
    return number.split("e")[0].replace("-", "").replace(".", "").strip("0")


def test_npz_holds_exactly_the_documented_keys(trace: Trace, tmp_path: Path) -> None:
    trace.save(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz", allow_pickle=False) as data:
        assert {"token_ids", "prompt_len", "logits", "attention", "mask", "mode"} <= set(data.files)
        assert data["token_ids"].dtype == np.int64
        assert data["mask"].dtype == bool


def _rewrite(src: Path, dst: Path, name: str, value: np.ndarray | None) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename == f"{name}.npy":
                if value is None:
                    continue
                buf = io.BytesIO()
                np.save(buf, value, allow_pickle=True)
                zout.writestr(info.filename, buf.getvalue())
            else:
                zout.writestr(info, zin.read(info))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("logits", None, "missing key 'logits'"),
        ("attention", np.zeros((2, 2, 3, 3), np.float32), "'attention' must be"),
        ("mask", np.zeros((8, 8), np.float32), "'mask' must hold true/false values, not numbers"),
        ("token_ids", np.array([1.5, 2.5]), "'token_ids' must hold integers, not decimal"),
        ("mode", np.array("sideways"), "mode must be one of"),
        ("logits", np.array([object()], dtype=object), "no pickle"),
        # numbers a drawing would show as NaN% or index past the vocabulary
        ("logits", np.full((8, 20), np.nan, np.float32), "'logits' must be finite"),
        ("attention", np.full((2, 2, 8, 8), np.inf, np.float32), "must lie in 0..1"),
        ("attention", np.full((2, 2, 8, 8), -0.5, np.float32), "must lie in 0..1"),
        ("token_ids", np.array([1, 2, 3, 99999, 1, 2, 3, 4]), "'token_ids' must lie in 0..19"),
        ("kv_cache_bytes", np.array(-5), "kv_cache_bytes must be >= 0"),
        ("seed", np.array(2**64 - 1, np.uint64), "seed must be from 0 to"),
        # what a damaged or hostile file can hold beyond wrong values
        ("prompt_len", np.array(np.inf), "invalid trace: prompt_len must be an integer, got inf"),
        ("layers", np.array(0), r"'layers' must be an array \[L'\], not a single value"),
        ("temperature", np.array(-1.0), "invalid trace"),
        ("stop_reason", np.array("\x1b[2J"), "stop_reason must be one of"),
        ("step_seconds", np.array([np.nan]), "'step_seconds' must be a 1-D array of finite"),
        ("step_seconds", np.array([-0.5]), "'step_seconds' must be a 1-D array of finite times >="),
        ("prefill_seconds", np.array(np.inf), "prefill_seconds must be a finite time"),
        ("prefill_seconds", np.array(-1.0), "prefill_seconds must be a finite time >= 0"),
        ("logits", np.zeros((8, 20), np.longdouble), "must be float16, float32, float64"),
        # indices and shapes that disagree with the rest of the file
        ("layers", np.array([-1, 1]), "'layers' must be distinct integers >= 0"),
        ("layers", np.array([0, 7]), "'layers' names layer 7 of a model with 2"),
        ("heads", np.array([0, 0]), "'heads' must be distinct integers >= 0"),
        ("positions", np.array([0, 1, 2, 3, 4, 5, 6, -1]), "'positions' must be 8 integers"),
        ("prompt_len", np.array(9), "prompt_len 9 is outside 1..8"),
        ("windows", np.array([-1, 0]), "'windows' must be a 1-D array of integers >= 0"),
        ("mask", np.zeros((7, 7), np.bool_), r"'mask' must be \[8, 8\]"),
        ("label_texts", np.array(["a"]), "'label_ids' and 'label_texts' must be 1-D and of one"),
        # integer fields hold integers: never truncated, a bool never read as 1
        ("seed", np.array(2.5), "invalid trace: seed must be an integer, got 2.5"),
        ("top_k", np.array(True), "invalid trace: top_k must be an integer, got True"),
        ("prompt_len", np.array(3.7), "invalid trace: prompt_len must be an integer, got 3.7"),
        # only seed and top_k store None as -1; other fields name themselves
        ("temperature", np.array(-1), "invalid trace: temperature must be >= 0, got -1"),
        ("step_masks", np.array(-1), "invalid trace: step_masks must be >= 0, got -1"),
        ("model_name", np.array(5), "invalid trace: model_name must be a string, got 5"),
        # a newer format is refused by name, never read as the one this version knows
        ("format", np.array(2), r"written by a newer maskviz \(trace format 2; this version"),
        ("format", np.array(1.0), "invalid trace: format must be an integer >= 1, got 1.0"),
        # one past each limit (the fixture: 8 tokens, 3 of them the prompt, vocabulary 20,
        # 2 layers, 5 steps)
        (
            "logits",
            np.zeros((9, 20), np.float32),
            r"'logits' must be \[T=8, vocab\], got \[9, 20\]",
        ),
        ("prompt_len", np.array(0), "prompt_len 0 is outside 1..8"),
        ("token_ids", np.array([1, 2, 3, 20, 1, 2, 3, 4]), "'token_ids' must lie in 0..19"),
        ("layers", np.array([0, 2]), "'layers' names layer 2 of a model with 2"),
        ("step_seconds", np.zeros(6), "'step_seconds' must hold 5 times .* or none, got 6"),
        ("top_k", np.array(0), "top_k must be >= 1, got 0"),
        ("format", np.array(0), "format must be an integer >= 1, got 0"),
        ("token_ids", np.zeros(0, np.int64), "'token_ids' must be a non-empty 1-D array"),
        ("mask", np.ones((8, 9), np.bool_), r"'mask' must be \[8, 8\], got \[8, 9\]"),
        (
            "seed",
            np.array(2**63, np.uint64),
            "seed must be from 0 to 9223372036854775807, got 9223372036854775808$",
        ),
        # zeros compress a thousandfold: the declared shape is refused before reading
        ("logits", np.zeros((8, 2**21), np.bool_), r"declares shape \[8, 2097152\]"),
    ],
)
def test_damaged_files_fail_with_the_library_error(
    trace: Trace, tmp_path: Path, name: str, value: np.ndarray | None, message: str
) -> None:
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    trace.save(good)
    _rewrite(good, bad, name, value)
    with pytest.raises(MaskvizError, match=message) as info:
        Trace.load(bad)
    assert str(info.value).startswith(str(bad))  # the file is named


def test_a_byte_flipped_anywhere_in_an_npz_is_a_library_error(trace: Trace, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    trace.save(good)
    data = good.read_bytes()
    messages = []
    for offset in range(0, len(data), 7):  # every member's header, data and the directory
        flipped = bytearray(data)
        flipped[offset] ^= 0xFF
        bad.write_bytes(flipped)
        try:
            Trace.load(bad)  # a flip can land where nothing is read
        except MaskvizError as exc:  # any other exception fails the test
            messages.append(str(exc))
    assert len(messages) > len(data) // 7 // 2
    # inside a deflate stream zlib fails before any checksum is reached
    assert any("damaged compressed data" in m for m in messages)


def test_an_array_header_numpy_cannot_parse_is_a_library_error(
    trace: Trace, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    trace.save(good)
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "attention.npy":  # its shape's tuple never closes
                at = data.index(b"'shape': (")
                data = data[:at] + data[at:].replace(b")", b" ", 1)
            zout.writestr(info, data)
    with pytest.raises(MaskvizError, match=r"'attention' has a damaged array header$"):
        Trace.load(bad)


def test_truncated_and_garbage_files_fail_cleanly(trace: Trace, tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    trace.save(path)
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 5):
        path.write_bytes(data[:cut])
        with pytest.raises(MaskvizError):
            Trace.load(path)
    with pytest.raises(MaskvizError, match="no such file"):
        Trace.load(tmp_path / "missing.npz")
    (tmp_path / "t.json").write_text("[1, 2]")
    with pytest.raises(MaskvizError, match="JSON object"):
        Trace.load(tmp_path / "t.json")


def test_a_header_claiming_more_data_than_present_is_refused(trace: Trace, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    trace.save(good)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)}
    )
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            payload = zin.read(info)
            if info.filename == "logits.npy":
                payload = b"\x93NUMPY\x01\x00" + buf.getvalue()[8:] + b"\x00" * 16
            zout.writestr(info.filename, payload)
    with pytest.raises(MaskvizError, match="declares"):
        Trace.load(bad)


@pytest.mark.parametrize("name", ["attention", "mask"])
def test_arrays_larger_than_their_token_count_are_refused_before_any_is_read(
    trace: Trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # zeros compress a thousandfold: a small file may declare gigabytes for one array
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    trace.save(good)
    recorded = (trace.layers.size, trace.heads.size) if name == "attention" else ()
    _rewrite(good, bad, name, np.zeros((*recorded, 300, 300), getattr(trace, name).dtype))

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("an array was read")

    monkeypatch.setattr(np.lib.format, "read_array", never)
    n = trace.n_tokens
    with pytest.raises(MaskvizError, match=rf"'{name}' must be \[.*{n}, {n}\], got \[.*300, 300\]"):
        Trace.load(bad)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_a_trace_saved_by_0_1_0_still_loads_as_greedy(suffix: str) -> None:
    # written by maskviz 0.1.0, before traces recorded their sampling settings
    old = Trace.load(Path(__file__).parent / "fixtures" / f"trace-0.1.0{suffix}")
    assert old.n_tokens == 6 and old.prompt_len == 3
    assert (old.temperature, old.top_k, old.seed) == (0.0, None, None)
    assert old.decoding == "greedy"


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_sampling_settings_round_trip(tmp_path: Path, suffix: str) -> None:
    model = random_model(GPTConfig(2, 2, 8, 16, 20), seed=4)
    sampled = model.trace([1, 2, 3], steps=5, temperature=0.7, top_k=4)
    assert sampled.seed is not None  # chosen and recorded
    sampled.save(tmp_path / f"t{suffix}")
    back = Trace.load(tmp_path / f"t{suffix}")
    assert (back.temperature, back.top_k, back.seed) == (0.7, 4, sampled.seed)
    replay = model.trace([1, 2, 3], steps=5, temperature=0.7, top_k=4, seed=back.seed)
    np.testing.assert_array_equal(replay.token_ids, sampled.token_ids)


def test_a_json_trace_with_numbers_too_large_or_nesting_too_deep_names_the_file(
    trace: Trace, tmp_path: Path
) -> None:
    path = tmp_path / "t.json"
    trace.save(path)
    text = path.read_text()
    for bad in (
        text.replace('"prompt_len": ', '"prompt_len": 1e400, "x": ', 1),
        text.replace('"token_ids": [', '"token_ids": [1000000000000000000000000000000, ', 1),
        "[" * 100_000 + "]" * 100_000,
    ):
        path.write_text(bad)
        with pytest.raises(MaskvizError) as info:
            Trace.load(path)
        assert str(info.value).startswith(str(path))


def test_text_a_trace_file_carries_is_printed_escaped(trace: Trace, tmp_path: Path) -> None:
    from dataclasses import replace

    from tests.conftest import run_cli

    path = tmp_path / "t.npz"
    replace(trace, model_desc="\x1b]0;pwned\x07", kv_formula="\x1b[31mred").save(path)
    result = run_cli("view", str(path), "--plain")
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout and "\\x1b]0;pwned" in result.stdout


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("token_ids", [84.9, 1, 2, 3, 4, 5, 6, 7], "token_ids: 84.9 is not an integer"),
        ("layers", [True, 1], "layers: True is not an integer"),
        ("prompt_len", 3.7, "prompt_len must be an integer, got 3.7"),
        ("seed", True, "seed must be an integer, got True"),
        ("temperature", -1, "temperature must be >= 0, got -1"),
        ("temperature", None, "temperature must be a number, got None"),
        ("step_masks", -1, "step_masks must be >= 0, got -1"),
        ("mask", [[2] * 8] * 8, "'mask' must hold true/false values, not numbers"),
        # fields that disagree with the run they describe
        (
            "step_seconds",
            [0.1],
            "'step_seconds' must hold 5 times (one per decoding step) or none, got 1",
        ),
        ("seed", 5, "top_k and seed belong to sampling: greedy decoding (temperature 0)"),
        ("top_k", 2, "top_k and seed belong to sampling"),
    ],
)
def test_json_values_of_the_wrong_type_are_refused_naming_the_field(
    trace: Trace, tmp_path: Path, field: str, value: object, message: str
) -> None:
    path = tmp_path / "t.json"
    trace.save(path)
    path.write_text(json.dumps({**json.loads(path.read_text()), field: value}))
    with pytest.raises(MaskvizError, match=f"^{path}: invalid trace: {re.escape(message)}") as info:
        Trace.load(path)
    assert info.value.exit_code == 1  # a damaged file, not a usage error


def test_seed_and_top_k_alone_read_minus_one_as_none(trace: Trace, tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    trace.save(path)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "seed": -1, "top_k": -1}))
    assert (Trace.load(path).seed, Trace.load(path).top_k) == (None, None)
    path.write_text(json.dumps({**data, "step_masks": -1}))
    with pytest.raises(MaskvizError, match="step_masks must be >= 0"):
        Trace.load(path)


@pytest.mark.parametrize("name", ["tiny", "tiny-swa"])
@pytest.mark.parametrize("mode", ["cached", "training", "recompute"])
@pytest.mark.parametrize("record_dtype", ["float16", None])
def test_weight_on_a_key_the_layers_mask_hides_is_refused_and_real_traces_load(
    tmp_path: Path, name: str, mode: str, record_dtype: str | None
) -> None:
    model = load_model(name)
    prompt = model.tokenizer.encode("To be, or")
    saved = model.trace(prompt, steps=30, mode=mode, record_dtype=record_dtype)  # type: ignore[arg-type]
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    saved.save(good)
    Trace.load(good)
    # tiny-swa's layer 0 slides (W = 32 < T): its last row hides keys the causal mask allows
    hidden = ~saved.layer_mask(0)
    q, k = (int(i) for i in np.argwhere(hidden)[-1])
    assert name == "tiny" or saved.mask[q, k]
    attention = saved.attention.copy()
    attention[0, 1, q, k], attention[0, 1, q, q] = attention[0, 1, q, q], 0  # rows still sum to 1
    _rewrite(good, bad, "attention", attention)
    with pytest.raises(
        MaskvizError,
        match=f"layer 0, head 1 puts weight on key {k} for query {q}, which the layer's mask hides",
    ):
        Trace.load(bad)


def test_a_recorded_row_that_is_not_a_distribution_is_refused(trace: Trace, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    trace.save(good)
    attention = trace.attention.copy()
    attention[1, 0, 4] /= 2
    _rewrite(good, bad, "attention", attention)
    with pytest.raises(
        MaskvizError, match=r"'attention' of layer 1, head 0, query 4 sums to 0\.5, not 1"
    ):
        Trace.load(bad)


def test_a_file_whose_mask_is_not_causal_is_refused_so_forged_weights_cannot_pass(
    trace: Trace, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    trace.save(good)
    _rewrite(good, bad, "mask", np.ones_like(trace.mask))  # would let weight on the future
    with pytest.raises(MaskvizError, match=r"'mask' must be the causal mask"):
        Trace.load(bad)


def test_a_dtype_that_is_not_the_logits_dtype_is_refused(trace: Trace) -> None:
    with pytest.raises(MaskvizError, match="'logits' are float32 but dtype says float64"):
        dataclasses.replace(trace, dtype="float64")


@pytest.fixture(scope="module")
def sliding() -> Trace:
    cfg = LlamaConfig(3, 2, 1, 4, 8, 16, 32, 20, windows=(2, None, 2))
    return random_model(cfg, seed=1).trace([1, 2, 3], steps=3, layers=[1])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: t.window(-2), r"layer -2 is not a layer of the trace's model \(layers 0\.\.2\)"),
        (lambda t: t.window(3), r"layer 3 is not a layer of the trace's model \(layers 0\.\.2\)"),
        (lambda t: t.layer_mask(99), "layer 99 is not a layer of the trace's model"),
        (lambda t: t.window(0.5), r"layer: 0\.5 is not an integer"),
        (lambda t: t.layer_mask(True), "layer: True is not an integer"),
        (lambda t: t.layer_attention(True, "mean"), "layer: True is not an integer"),
        (lambda t: t.layer_attention("1", "mean"), "layer: '1' is not an integer"),
        (lambda t: t.next_token_probs(0, k=-2), "k must be >= 1, got -2"),
        (lambda t: t.next_token_probs(0, k=0), "k must be >= 1, got 0"),
        (lambda t: t.next_token_probs(0, k=1.5), r"k: 1\.5 is not an integer"),
        (lambda t: t.probabilities(99), r"position 99 is outside 0\.\.5, the trace's tokens"),
        (lambda t: t.probabilities(-1), r"position -1 is outside 0\.\.5"),
        (lambda t: t.next_token_probs(6), r"position 6 is outside 0\.\.5"),
        (lambda t: t.token_label(-5), r"token id -5 is outside the vocabulary 0\.\.19"),
        (lambda t: t.token_label(20), r"token id 20 is outside the vocabulary 0\.\.19"),
    ],
)
def test_trace_helpers_refuse_layers_positions_and_ids_that_do_not_exist(
    sliding: Trace, call: object, message: str
) -> None:
    with pytest.raises(MaskvizError, match=message) as info:
        call(sliding)  # type: ignore[operator]
    assert info.value.exit_code == 2


def test_a_0_1_0_trace_knows_the_layers_it_recorded() -> None:
    old = Trace.load(Path(__file__).parent / "fixtures" / "trace-0.1.0.npz")  # layers [0, 1]
    assert old.window(1) is None
    with pytest.raises(
        MaskvizError, match=r"layer 2 is not a layer of the trace's model \(layers 0\.\.1\)"
    ):
        old.layer_mask(2)


def test_layer_masks_are_new_arrays_that_leave_the_trace_as_it_was(sliding: Trace) -> None:
    before = sliding.mask.copy()
    for layer in range(3):  # full and sliding layers alike
        sliding.layer_mask(layer)[:] = False
    np.testing.assert_array_equal(sliding.mask, before)
    assert sliding.layer_mask(1).any()


@pytest.mark.parametrize("name", ["t.txt", "t", "t.npz.bak"])
def test_a_trace_is_saved_only_under_a_trace_suffix(
    trace: Trace, tmp_path: Path, name: str
) -> None:
    with pytest.raises(MaskvizError, match=r"cannot save to .*; use one of \.npz, \.json") as info:
        trace.save(tmp_path / name)
    assert info.value.exit_code == 2
    assert not list(tmp_path.iterdir())
    trace.save(tmp_path / "T.NPZ")  # the suffix in any case
    assert Trace.load(tmp_path / "T.NPZ").n_tokens == trace.n_tokens


def test_the_command_line_offers_the_trace_formats_the_library_writes() -> None:
    from maskviz.cli import TRACE_FILES
    from maskviz.trace import SUFFIXES

    assert TRACE_FILES == SUFFIXES


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_a_trace_too_large_for_memory_says_so_about_the_file(
    trace: Trace, tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"t{suffix}"
    trace.save(path)

    def no_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError  # as NumPy or json raise it: no text

    monkeypatch.setattr(np.lib.format, "read_array", no_memory)
    monkeypatch.setattr(json, "loads", no_memory)
    with pytest.raises(MaskvizError, match=f"^{re.escape(str(path))}: not enough memory to read"):
        Trace.load(path)


def test_an_npz_declaring_more_than_the_machines_memory_is_refused_before_reading(
    trace: Trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maskviz import trace as trace_module

    path = tmp_path / "t.npz"
    trace.save(path)
    size = sum(a.nbytes for a in (trace.logits, trace.attention, trace.token_ids))
    monkeypatch.setattr(trace_module, "_memory_bytes", lambda: size // 2)
    monkeypatch.setattr(np.lib.format, "read_array", pytest.fail)  # nothing may be read
    with pytest.raises(MaskvizError, match=r"its arrays declare 0\.0 GiB, more than this machine"):
        Trace.load(path)


def test_a_sliding_layers_mask_allows_exactly_its_window(tmp_path: Path) -> None:
    from maskviz.arch.llama import LlamaConfig

    cfg = LlamaConfig(2, 2, 1, 8, 16, 32, n_ctx=32, vocab_size=40, windows=(3, None))
    trace = random_model(cfg, seed=0).trace([1, 2, 3, 4], steps=6)
    rows = np.arange(trace.n_tokens)
    assert (trace.layer_mask(0).sum(axis=1) == np.minimum(rows + 1, 3)).all()
    assert (trace.layer_mask(1).sum(axis=1) == rows + 1).all()
    trace.save(tmp_path / "t.npz")  # the file keeps the windows the masks come from
    assert np.array_equal(Trace.load(tmp_path / "t.npz").layer_mask(0), trace.layer_mask(0))


# What NumPy says when it is handed a damaged field: a message must name the field instead
_NUMPY_WORDING = ("inhomogeneous", "reshape", "kind (", "convert an array", "array element")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trace of the shipped model, saved as both formats: 4 layers, 4 heads, 25 tokens."""
    model = load_model("tiny")
    folder = tmp_path_factory.mktemp("shipped")
    trace = model.trace(model.tokenizer.encode("To be, or not to be"), steps=6)
    assert (trace.n_tokens, trace.layers.size, trace.heads.size) == (25, 4, 4)
    trace.save(folder / "t.json")
    trace.save(folder / "t.npz")
    return folder


def _refusal(path: Path) -> str:
    with pytest.raises(MaskvizError) as info:
        Trace.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert not [word for word in _NUMPY_WORDING if word in message], message
    assert info.value.exit_code == 1  # a damaged file, not a usage error
    return message


def _shorten_one_row(data: dict[str, Any]) -> None:
    data["attention"][1][2][7].pop()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_shorten_one_row, "'attention' is not a rectangular array (rows of different lengths)"),
        (lambda d: d.update(attention=[]),
         "'attention' holds 0 numbers; a trace of 4 layers, 4 heads and 25 tokens needs "
         "4 x 4 x 25 x 25"),
        (lambda d: d.update(mask=[[int(x) for x in row] for row in d["mask"]]),
         "'mask' must hold true/false values, not numbers"),
        (lambda d: d["mask"][3].append(False),
         "'mask' is not a rectangular array (rows of different lengths)"),
        (lambda d: d.update(prompt_len=[19, 20]), "'prompt_len' must be one integer, not an array of 2"),
        (lambda d: d.update(temperature=[]), "'temperature' must be one number, not an array of 0"),
        # a single value where an array belongs
        (lambda d: d.update(layers=3), "'layers' must be an array [L'], not a single value"),
        (lambda d: d.update(token_ids="To be"), "'token_ids' must be an array [T], not a single value"),
        (lambda d: d.update(step_seconds=None), "'step_seconds' must be an array [T - P], not a single"),
        # text where a number belongs
        (lambda d: d["logits"][0].__setitem__(5, "0.5"),
         "'logits' must hold floating-point numbers, not text"),
        (lambda d: d["attention"][0][0][0].__setitem__(0, "1"),
         "'attention' must hold floating-point numbers, not text"),
        (lambda d: d["logits"][0].__setitem__(5, None),
         "'logits' must hold floating-point numbers, not null or mixed values"),
        (lambda d: d.update(label_texts=list(range(len(d["label_ids"])))),
         "'label_texts' must hold text, not numbers"),
        (lambda d: d["label_texts"].__setitem__(0, 7),
         "'label_texts' must hold text, not null or mixed values"),
        # nested too deep, or too shallow
        (lambda d: d.update(attention=[d["attention"]]),
         "'attention' must have 4 dimensions [L', H', T, T], not 5"),
        (lambda d: d.update(token_ids=[[i] for i in d["token_ids"]]),
         "'token_ids' must have 1 dimension [T], not 2"),
        (lambda d: d.update(positions=[[[[[[0]]]]]] * 80),
         "'positions' must have 1 dimension [T], not 6"),
        (lambda d: d.update(mask=d["mask"][0]), "'mask' must have 2 dimensions [T, T], not 1"),
        (lambda d: d["token_ids"].__setitem__(0, 10**30),
         "'token_ids' holds 1000000000000000000000000000000, too large for a 64-bit integer"),
    ],
)  # fmt: skip
def test_a_damaged_json_field_is_refused_naming_the_field_and_what_it_must_be(
    shipped: Path, tmp_path: Path, damage: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = json.loads((shipped / "t.json").read_text())
    damage(data)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    assert message in _refusal(path)


def test_a_ragged_attention_array_is_refused_naming_the_field(
    shipped: Path, tmp_path: Path
) -> None:
    from tests.conftest import run_cli

    data = json.loads((shipped / "t.json").read_text())
    _shorten_one_row(data)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    result = run_cli("view", str(path), "--plain")
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()  # one line, naming the file and the field
    assert line.endswith(
        f"{path}: invalid trace: 'attention' is not a rectangular array (rows of different lengths)"
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("prompt_len", np.array([19, 20]), "'prompt_len' must be one integer, not an array of 2"),
        ("seed", np.zeros((2, 3), np.int64), "'seed' must be one integer, not an array of 6"),
        ("prefill_seconds", np.array([]), "'prefill_seconds' must be one number, not an array of 0"),
        ("model_name", np.array(["tiny", "x"]), "'model_name' must be one string, not an array of 2"),
        ("token_ids", np.array(7), "'token_ids' must be an array [T], not a single value"),
        ("attention", np.zeros((1, 4, 4, 25, 25), np.float32),
         "'attention' must have 4 dimensions [L', H', T, T], not 5"),
        ("mask", np.tri(25, dtype=np.int64), "'mask' must hold true/false values, not numbers"),
        ("logits", np.full((25, 257), "0.5"), "'logits' must hold floating-point numbers, not text"),
        ("logits", np.zeros((25, 257), np.int64),
         "'logits' must hold floating-point numbers, not integers"),
        ("layers", np.array([0.0, 1.0, 2.0, 3.0]), "'layers' must hold integers, not decimal numbers"),
        ("label_texts", np.array([1, 2]), "'label_texts' must hold text, not numbers"),
    ],
)  # fmt: skip
def test_a_damaged_npz_field_is_refused_naming_the_field_and_what_it_must_be(
    shipped: Path, tmp_path: Path, name: str, value: np.ndarray, message: str
) -> None:
    path = tmp_path / "t.npz"
    _rewrite(shipped / "t.npz", path, name, value)
    assert message in _refusal(path)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_a_recording_of_no_heads_still_round_trips_its_empty_attention(
    tmp_path: Path, suffix: str
) -> None:
    model = load_model("tiny")
    saved = model.trace(model.tokenizer.encode("To be"), steps=2, layers=[1, 2], heads=[])
    saved.save(tmp_path / f"t{suffix}")
    back = Trace.load(tmp_path / f"t{suffix}")
    assert back.attention.shape == (2, 0, 7, 7)  # JSON wrote [[], []]
    assert_same(saved, back)


def test_an_id_the_trace_has_no_label_for_reads_as_its_id_as_tokenizers_show_it() -> None:
    model = random_model(GPTConfig(1, 1, 8, 16, 300), seed=0)  # not the byte-level vocabulary
    trace = model.trace([1, 2, 3], steps=0)
    unlabelled = next(i for i in range(300) if i not in trace.label_ids)
    assert trace.token_label(unlabelled) == f"<id:{unlabelled}>"
