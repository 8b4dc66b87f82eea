"""GPT-2 checkpoints in Hugging Face layout: parity with transformers, and damaged files.

The fixture in tests/fixtures/gpt2-tiny was written by scripts/make_gpt2_fixture.py
with transformers' GPT2LMHeadModel (eager attention); this test needs neither torch
nor transformers.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskviz import MaskvizError, load_model

FIXTURE = Path(__file__).parent / "fixtures" / "gpt2-tiny"
REFERENCE = np.load(FIXTURE / "reference.npz", allow_pickle=False)


@pytest.mark.parametrize("mode", ["cached", "training"])
def test_float64_matches_transformers_to_1e9(mode: str) -> None:
    model = load_model(FIXTURE, dtype="float64")
    prompt = model.tokenizer.encode(str(REFERENCE["prompt"]))
    assert prompt == REFERENCE["prompt_ids"].tolist()
    steps = len(REFERENCE["token_ids"]) - len(prompt)
    trace = model.trace(prompt, steps=steps, mode=mode)  # type: ignore[arg-type]
    np.testing.assert_array_equal(trace.token_ids, REFERENCE["token_ids"])
    assert np.abs(trace.logits - REFERENCE["logits"]).max() <= 1e-9
    assert np.abs(trace.attention - REFERENCE["attentions"]).max() <= 1e-9


@pytest.mark.parametrize("mode", ["cached", "training"])
def test_float32_matches_transformers_float32(mode: str) -> None:
    # Both sides round to float32 (eps 1.2e-7) in a different order; logits here are
    # of order 10, so a few hundred ulps of that, 1e-5, bounds the difference.
    model = load_model(FIXTURE, dtype="float32")
    prompt = REFERENCE["prompt_ids"].tolist()
    trace = model.trace(prompt, steps=len(REFERENCE["token_ids"]) - len(prompt), mode=mode)  # type: ignore[arg-type]
    np.testing.assert_array_equal(trace.token_ids, REFERENCE["token_ids"])
    assert np.abs(trace.logits - REFERENCE["logits_float32"]).max() <= 1e-5
    assert np.abs(trace.attention - REFERENCE["attentions_float32"]).max() <= 1e-5


def test_names_without_the_transformer_prefix_and_an_explicit_lm_head_load(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "ckpt"
    shutil.copytree(FIXTURE, folder)
    tensors = {
        k.removeprefix("transformer."): v
        for k, v in load_file(str(folder / "model.safetensors")).items()
    }
    tensors["lm_head.weight"] = tensors["wte.weight"].copy()
    tensors["h.0.attn.bias"] = np.tril(np.ones((64, 64), np.float32))[None, None]
    save_file(tensors, str(folder / "model.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the saved causal-mask buffer is no unused weight
        model = load_model(folder, dtype="float64")
    logits, _ = model.forward(REFERENCE["token_ids"])
    assert np.abs(logits - REFERENCE["logits"]).max() <= 1e-9


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(FIXTURE, folder)
    return folder


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": "gemma3_text"}, 'model_type = "gemma3_text" is not supported'),
        ({"activation_function": "relu"}, "activation_function"),
        ({"add_cross_attention": True}, "add_cross_attention"),
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
        ({"reorder_and_upcast_attn": True}, "reorder_and_upcast_attn"),
        ({"n_embd": 40}, r"has shape \[32\], expected \[40\]"),
        ({"n_head": 3}, "divisible"),
        ({"vocab_size": 100}, "the tokenizer.s ids reach 319 but the model.s vocabulary has 100"),
        ({"n_layer": "two"}, "n_layer must be an integer"),
        ({"n_layer": 1}, "holds layer 1 but config.json's n_layer is 1"),
    ],
)
def test_unsupported_or_inconsistent_configs_are_refused(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    folder = _copy(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config.update(change)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MaskvizError, match=message):
        load_model(folder)


def _set_config(folder: Path, **change: object) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(change)
    (folder / "config.json").write_text(json.dumps(config))


def test_is_causal_false_is_refused_as_a_usage_error(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    _set_config(folder, is_causal=False)
    message = r"config.json: is_causal = false is not supported \(maskviz runs GPT-2 causally\)"
    with pytest.raises(MaskvizError, match=message) as info:
        load_model(folder)
    assert info.value.exit_code == 2
    _set_config(folder, is_causal=True)
    assert load_model(folder).name == "ckpt"


def test_untied_config_without_lm_head_is_refused_naming_the_tensor(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    _set_config(folder, tie_word_embeddings=False)
    message = "missing tensor 'lm_head.weight', required because tie_word_embeddings is false"
    with pytest.raises(MaskvizError, match=message):
        load_model(folder)


def test_n_inner_of_four_times_n_embd_loads_and_other_values_name_the_supported_one(
    tmp_path: Path,
) -> None:
    folder = _copy(tmp_path)
    _set_config(folder, n_inner=128)  # 4 x n_embd, written out
    logits, _ = load_model(folder, dtype="float64").forward(REFERENCE["token_ids"])
    assert np.abs(logits - REFERENCE["logits"]).max() <= 1e-9
    _set_config(folder, n_inner=100)
    message = (
        r"n_inner = 100 is not supported \(this engine implements n_inner = 4 x n_embd = 128\)$"
    )
    with pytest.raises(MaskvizError, match=message):
        load_model(folder)


def test_every_refused_config_value_names_the_field_and_what_is_supported(
    tmp_path: Path,
) -> None:
    folder = _copy(tmp_path)
    fields = [
        "model_type",
        "activation_function",
        "add_cross_attention",
        "scale_attn_by_inverse_layer_idx",
        "reorder_and_upcast_attn",
        "scale_attn_weights",
        "tie_word_embeddings",
        "is_causal",
        "n_inner",
    ]
    original = (folder / "config.json").read_text()
    for field in fields:
        _set_config(folder, **{field: "bogus"})
        with pytest.raises(MaskvizError) as info:
            load_model(folder)
        message = str(info.value)
        assert f'{field} = "bogus" is not supported (' in message
        # the reason names something, never an empty "()" or "implements )"
        assert re.search(r"\((this engine implements|maskviz runs) \S[^()]*\)$", message), message
        (folder / "config.json").write_text(original)


def test_shipped_model_names_match_in_any_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a miss would try the hub: keep it local
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for spelling in ("Tiny", "TINY", "tiny"):
        assert load_model(spelling).name == "tiny"


def _bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, rounding to nearest, ties to even."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def _widen(bf16: np.ndarray) -> np.ndarray:
    return (bf16.astype(np.uint32) << 16).view(np.float32)


def _write_raw(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    """Write tensors given as (safetensors dtype name, little-endian array of its bits)."""
    from safetensors import TensorSpec, serialize_file

    specs = {
        name: TensorSpec(
            dtype=dtype, shape=list(arr.shape), data_ptr=arr.ctypes.data, data_len=arr.nbytes
        )
        for name, (dtype, arr) in tensors.items()
    }
    serialize_file(specs, str(path))  # `tensors` keeps every buffer alive meanwhile


def _bfloat16_copy(root: Path) -> tuple[Path, Path]:
    """The fixture stored as bfloat16, and again as float32 holding the exact upcast."""
    from safetensors.numpy import load_file, save_file

    original = load_file(str(FIXTURE / "model.safetensors"))
    bits = {name: np.ascontiguousarray(_bfloat16_bits(v)) for name, v in original.items()}
    bf16, f32 = root / "bf16", root / "f32"
    for folder in (bf16, f32):
        shutil.copytree(FIXTURE, folder)
    _write_raw(bf16 / "model.safetensors", {k: ("bfloat16", b) for k, b in bits.items()})
    save_file({k: _widen(b) for k, b in bits.items()}, str(f32 / "model.safetensors"))
    return bf16, f32


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bfloat16_checkpoint_gives_bit_identical_logits_to_its_float32_upcast(
    tmp_path: Path, dtype: str
) -> None:
    bf16, f32 = _bfloat16_copy(tmp_path)
    from_bf16 = load_model(bf16, dtype=dtype)  # type: ignore[arg-type]
    from_f32 = load_model(f32, dtype=dtype)  # type: ignore[arg-type]
    ids = REFERENCE["token_ids"]
    (logits_a, att_a), (logits_b, att_b) = from_bf16.forward(ids), from_f32.forward(ids)
    assert logits_a.dtype == dtype
    assert logits_a.tobytes() == logits_b.tobytes()
    assert att_a.tobytes() == att_b.tobytes()
    # rounding to bfloat16 really changed the weights, so the comparison is not vacuous
    assert np.abs(logits_a - REFERENCE["logits"]).max() > 1e-6


def test_a_file_mixing_bfloat16_float16_and_float32_reads_each_tensor_exactly(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal((3, 4)).astype(np.float32)
    bits = _bfloat16_bits(values)
    half = values.astype(np.float16)
    path = tmp_path / "mixed.safetensors"
    _write_raw(path, {"a": ("bfloat16", bits), "b": ("float16", half), "c": ("float32", values)})
    from maskviz.loading import read_safetensors

    tensors = read_safetensors(path)
    assert tensors["a"].dtype == np.float32 and tensors["a"].shape == (3, 4)
    assert tensors["a"].tobytes() == _widen(bits).tobytes()
    assert tensors["b"].dtype == np.float16 and tensors["b"].tobytes() == half.tobytes()
    assert tensors["c"].dtype == np.float32 and tensors["c"].tobytes() == values.tobytes()


def _damage(path: Path, action: str, position: float, bit: int) -> None:
    """Flip one bit of ``path`` at ``position`` (0..1 of its length), or cut it there."""
    data = bytearray(path.read_bytes())
    at = int(position * len(data))
    if action == "flip":
        data[at] ^= 1 << bit
    else:
        del data[at:]
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def bfloat16_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bfloat16_copy(tmp_path_factory.mktemp("bf16"))[0]


@settings(max_examples=150)
@given(
    action=st.sampled_from(["flip", "truncate"]),
    position=st.floats(0, 1, exclude_max=True),
    bit=st.integers(0, 7),
)
def test_bfloat16_files_load_and_their_damaged_copies_load_correctly_or_fail_naming_the_file(
    tmp_path_factory: pytest.TempPathFactory,
    bfloat16_folder: Path,
    action: str,
    position: float,
    bit: int,
) -> None:
    assert load_model(bfloat16_folder).name == "bf16"
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(bfloat16_folder, folder, dirs_exist_ok=True)
    path = folder / "model.safetensors"
    _damage(path, action, position, bit)
    try:
        model = load_model(folder, dtype="float64")
    except MaskvizError as exc:
        message = str(exc)
    else:  # it loaded: it must run and give finite numbers
        logits, attention = model.forward(REFERENCE["prompt_ids"])
        assert np.isfinite(logits).all() and np.isfinite(attention).all()
        return
    assert str(path) in message


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("config.json", b"{not json", "config.json: not valid JSON"),
        ("config.json", None, "config.json: missing"),
        ("model.safetensors", None, "model.safetensors: missing"),
        ("model.safetensors", b"\x00" * 7, "model.safetensors: not a readable"),
        ("tokenizer.json", b"{}", "tokenizer.json: not a loadable"),
        ("tokenizer.json", None, "tokenizer.json: missing"),
        # a folder where a file should be is named as one, not as missing
        ("config.json", "folder", "config.json: a folder, not a file"),
        ("model.safetensors", "folder", "model.safetensors: a folder, not a file"),
        ("tokenizer.json", "folder", "tokenizer.json: a folder, not a file"),
    ],
)
def test_broken_files_name_the_file_and_the_problem(
    tmp_path: Path, filename: str, content: bytes | str | None, message: str
) -> None:
    folder = _copy(tmp_path)
    if content is None:
        (folder / filename).unlink()
    elif content == "folder":
        (folder / filename).unlink()
        (folder / filename).mkdir()
    else:
        assert isinstance(content, bytes)
        (folder / filename).write_bytes(content)
    with pytest.raises(MaskvizError, match=message):
        load_model(folder)


def test_missing_folder_and_unknown_names_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(MaskvizError, match="no model") as info:
        load_model(str(tmp_path / "nope" / "x"))
    assert info.value.exit_code == 2
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(MaskvizError, match="is a file"):
        load_model(tmp_path / "file.bin")
    with pytest.raises(MaskvizError, match="a name, a folder or a hub id, got 123") as info:
        load_model(123)  # type: ignore[arg-type]
    assert info.value.exit_code == 2
    for empty in ("", "  "):  # never the current folder
        with pytest.raises(MaskvizError, match=f"a name, a folder or a hub id, got {empty!r}"):
            load_model(empty)


def test_hub_id_offline_and_not_cached_says_how_to_get_it_or_the_shipped_name_meant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # "tiny-sw" is close to a shipped name; "gpt2" is not, so the shipped names are listed;
    # "org/tiyn" is plainly a hub id
    for spec, hint in [
        ("tiny-sw", "; or did you mean the shipped model 'tiny-swa'?"),
        ("gpt2", "; the shipped models are tiny, tiny-swa"),
        ("org/tiyn", "download it once with network access (maskviz trace 'hi' --model org/tiyn) "
                     "or pass a local checkpoint folder"),
    ]:  # fmt: skip
        with pytest.raises(MaskvizError, match="not in the local Hugging Face cache") as failure:
            load_model(spec)
        assert str(failure.value).endswith(hint)


def test_hf_hub_offline_set_to_0_still_tries_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # as huggingface_hub reads it: not offline
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    asked: list[bool] = []

    def snapshot_download(repo_id: str, **kwargs: object) -> str:
        asked.append(bool(kwargs.get("local_files_only")))
        raise OSError("no network here")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    with pytest.raises(MaskvizError, match=r"could not be downloaded \(OSError\)"):
        load_model("org/model")
    assert asked == [True, False]  # the cache, then the hub


def test_without_the_hf_extra_the_message_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tokenizers(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith(("tokenizers", "huggingface_hub")):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_tokenizers)
    with pytest.raises(MaskvizError, match=r"maskviz\[hf\]"):
        load_model(FIXTURE)
    with pytest.raises(
        MaskvizError, match=r"maskviz\[hf\]'; the shipped models are tiny, tiny-swa$"
    ):
        load_model("nope")


@settings(max_examples=300)
@given(
    filename=st.sampled_from(["model.safetensors", "config.json", "tokenizer.json"]),
    action=st.sampled_from(["flip", "truncate"]),
    position=st.floats(0, 1, exclude_max=True),
    bit=st.integers(0, 7),
)
def test_flipped_or_truncated_bytes_run_finite_or_fail_cleanly(
    tmp_path_factory: pytest.TempPathFactory, filename: str, action: str, position: float, bit: int
) -> None:
    folder = _copy(tmp_path_factory.mktemp("fuzz"))
    path = folder / filename
    _damage(path, action, position, bit)
    try:
        model = load_model(folder, dtype="float64")
    except MaskvizError:
        return
    # it loaded: it must run and give finite numbers
    logits, attention = model.forward(REFERENCE["prompt_ids"] % model.config.vocab_size)
    assert np.isfinite(logits).all() and np.isfinite(attention).all()


def test_a_gpt2_config_says_whether_the_head_that_runs_is_tied(tmp_path: Path) -> None:
    tied = load_model(FIXTURE)
    assert tied.config.tie_word_embeddings
    from safetensors.numpy import load_file, save_file

    copy = tmp_path / "untied"
    shutil.copytree(FIXTURE, copy)
    tensors = load_file(str(copy / "model.safetensors"))
    wte = next(v for k, v in tensors.items() if k.endswith("wte.weight"))
    tensors["lm_head.weight"] = wte + np.float32(0.5)  # a head of its own
    save_file(tensors, str(copy / "model.safetensors"))
    untied = load_model(copy)
    assert not untied.config.tie_word_embeddings
    assert untied.config.n_params == tied.config.n_params + wte.size  # counted apart


@pytest.mark.parametrize("value", [1e39, -1e39])
def test_a_float64_weight_beyond_float32_s_range_is_refused_when_loading_float32(
    tmp_path: Path, value: float
) -> None:
    from safetensors.numpy import load_file, save_file

    folder = _copy(tmp_path)
    tensors = {k: v.astype(np.float64) for k, v in load_file(folder / "model.safetensors").items()}
    tensors["transformer.wpe.weight"][-1, 0] = value  # finite in float64
    save_file(tensors, str(folder / "model.safetensors"))
    message = (
        rf"model\.safetensors: tensor 'transformer\.wpe\.weight' holds {value:.3g}, beyond float32's"
    ).replace("+", r"\+")
    with pytest.raises(MaskvizError, match=message + r" range .*--dtype float64"):
        load_model(folder)
    assert load_model(folder, dtype="float64").weights.wpe[-1, 0] == value
    tensors["transformer.wpe.weight"][-1, 0] = np.inf  # no dtype holds it: not "load in float64"
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(MaskvizError, match=r"'transformer\.wpe\.weight' contains NaN or infinity"):
        load_model(folder)


@pytest.mark.parametrize(
    ("value", "shown"), [(True, "true"), ("1e-5", '"1e-5"'), (None, "null"), (0, "0")]
)
def test_a_layer_norm_epsilon_that_is_no_positive_number_is_refused_not_read_as_one(
    tmp_path: Path, value: object, shown: str
) -> None:
    folder = _copy(tmp_path)
    _set_config(folder, layer_norm_epsilon=value)  # float(true) would be an epsilon of 1.0
    with pytest.raises(MaskvizError) as info:
        load_model(folder)
    assert str(info.value) == (
        f"{folder / 'config.json'}: layer_norm_epsilon must be a finite number > 0, got {shown}"
    )


def test_a_config_without_model_type_is_read_by_its_architectures_class_or_refused(
    tmp_path: Path,
) -> None:
    from maskviz.arch import supported_model_types
    from maskviz.loading import _ARCHITECTURES

    assert set(_ARCHITECTURES.values()) <= set(supported_model_types())
    folder = _copy(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    del config["model_type"]  # the fixture's architectures: ["GPT2LMHeadModel"]
    (folder / "config.json").write_text(json.dumps(config))
    logits, _ = load_model(folder, dtype="float64").forward(REFERENCE["token_ids"])
    assert np.abs(logits - REFERENCE["logits"]).max() <= 1e-9
    del config["architectures"]  # no longer read as GPT-2 and failing on a Llama's fields
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MaskvizError) as info:
        load_model(folder)
    assert str(info.value) == f"{folder / 'config.json'}: missing field 'model_type'"
    for name in ("tiny", "tiny-swa"):  # the shipped models still load
        assert load_model(name).name == name


def test_a_config_too_large_to_be_one_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    config = folder / "config.json"
    data = json.loads(config.read_text())
    config.write_text(json.dumps(data) + " " * (2**20 - len(json.dumps(data))))  # 1 MiB: read
    assert load_model(folder).config.n_layer == data["n_layer"]
    config.write_text(json.dumps(data) + " " * 2**20)  # past it: refused unread
    with pytest.raises(
        MaskvizError, match=f"^{re.escape(str(config))}: too large to be a model config$"
    ):
        load_model(folder)


@pytest.mark.parametrize(("value", "shown"), [(1e999, "Infinity"), ({"x": 1}, '{"x": 1}')])
def test_a_config_name_that_is_not_text_is_refused(
    tmp_path: Path, value: object, shown: str
) -> None:
    folder = _copy(tmp_path)
    config = folder / "config.json"
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "name": "shakespeare"}))
    assert load_model(folder).name == "shakespeare"  # maskviz's own field, shown by traces
    config.write_text(json.dumps({**data, "name": value}))
    with pytest.raises(MaskvizError) as info:
        load_model(folder)
    assert str(info.value) == f"{config}: name must be text, got {shown}"
