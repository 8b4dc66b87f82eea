"""GPT-2 checkpoints in Hugging Face layout: parity with transformers, and damaged files.

The fixture in tests/fixtures/gpt2-tiny was written by scripts/make_gpt2_fixture.py
with transformers' GPT2LMHeadModel (eager attention); this test needs neither torch
nor transformers.
"""

from __future__ import annotations

import json
import shutil
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
        ({"model_type": "llama"}, "model_type = 'llama' is not supported"),
        ({"activation_function": "relu"}, "activation_function"),
        ({"add_cross_attention": True}, "add_cross_attention"),
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
        ({"reorder_and_upcast_attn": True}, "reorder_and_upcast_attn"),
        ({"n_embd": 40}, r"has shape \[32\], expected \[40\]"),
        ({"n_head": 3}, "divisible"),
        ({"vocab_size": 100}, "tokenizer has 320 tokens"),
        ({"n_layer": "two"}, "n_layer must be an integer"),
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


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("config.json", b"{not json", "config.json: not valid JSON"),
        ("config.json", None, "config.json: missing"),
        ("model.safetensors", None, "model.safetensors: missing"),
        ("model.safetensors", b"\x00" * 7, "model.safetensors: not a readable"),
        ("tokenizer.json", b"{}", "tokenizer.json: not a loadable"),
        ("tokenizer.json", None, "tokenizer.json: missing"),
    ],
)
def test_broken_files_name_the_file_and_the_problem(
    tmp_path: Path, filename: str, content: bytes | None, message: str
) -> None:
    folder = _copy(tmp_path)
    if content is None:
        (folder / filename).unlink()
    else:
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


def test_hub_id_offline_and_not_cached_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MaskvizError, match="not in the local Hugging Face cache"):
        load_model("gpt2")


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
    with pytest.raises(MaskvizError, match=r"maskviz\[hf\]"):
        load_model("gpt2")


@settings(max_examples=300, deadline=None)
@given(
    filename=st.sampled_from(["model.safetensors", "config.json", "tokenizer.json"]),
    action=st.sampled_from(["flip", "truncate"]),
    position=st.floats(0, 1, exclude_max=True),
    bit=st.integers(0, 7),
)
def test_flipped_or_truncated_bytes_load_correctly_or_fail_cleanly(
    tmp_path_factory: pytest.TempPathFactory, filename: str, action: str, position: float, bit: int
) -> None:
    folder = _copy(tmp_path_factory.mktemp("fuzz"))
    path = folder / filename
    data = bytearray(path.read_bytes())
    at = int(position * len(data))
    if action == "flip":
        data[at] ^= 1 << bit
    else:
        del data[at:]
    path.write_bytes(bytes(data))
    try:
        model = load_model(folder, dtype="float64")
    except MaskvizError:
        return
    # it loaded: it must run and give finite numbers
    logits, attention = model.forward(REFERENCE["prompt_ids"] % model.config.vocab_size)
    assert np.isfinite(logits).all() and np.isfinite(attention).all()
