"""The shipped models: their weights agree with the training run, and they model English.

`tiny` is a byte-level GPT-2; `tiny-swa` its Llama-style sibling (rotary positions,
grouped-query attention, sliding-window layers alternating with full ones), trained
by the same script on the same corpus.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from maskviz import load_model
from maskviz.loading import shipped_model_dir

FIXTURES = Path(__file__).parent / "fixtures"
HELDOUT = (FIXTURES / "heldout.txt").read_bytes()
SHIPPED = ["tiny", "tiny-swa"]
REFERENCE = {"tiny": "tiny_reference.npz", "tiny-swa": "tiny_swa_reference.npz"}


@cache
def training(name: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads((shipped_model_dir(name) / "config.json").read_text())
    return info["training"]


def bits_per_byte(name: str, data: bytes, dtype: str = "float32") -> float:
    """Mean next-byte cross-entropy over consecutive 256-byte windows, as the training
    script measures it: every byte after the first is predicted once."""
    model = load_model(name, dtype=dtype)  # type: ignore[arg-type]
    ids = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    n_ctx = 256
    total, count = 0.0, 0
    for start in range(0, ids.size - 1, n_ctx):
        window = ids[start : start + n_ctx + 1]
        logits, _ = model.forward(window[:-1], layers=[])
        z = logits.astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        total -= log_p[np.arange(window.size - 1), window[1:]].sum()
        count += window.size - 1
    return total / count / np.log(2)


def unigram_bits_per_byte(data: bytes) -> float:
    """Entropy of the text's own byte distribution: no unigram model does better on it."""
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_reproduce_the_training_scripts_logits(name: str) -> None:
    reference = np.load(FIXTURES / REFERENCE[name], allow_pickle=False)
    model = load_model(name, dtype="float64")
    logits, _ = model.forward(reference["token_ids"])
    assert np.abs(logits - reference["logits"]).max() < 1e-9
    model32 = load_model(name)
    logits32, _ = model32.forward(reference["token_ids"])
    # float32 on both sides, summed in a different order: logits of order 10, eps 1.2e-7
    assert np.abs(logits32 - reference["logits_float32"]).max() < 1e-4


@pytest.mark.parametrize("name", SHIPPED)
def test_heldout_bits_per_byte_are_as_stated_and_well_below_unigram(name: str) -> None:
    measured = bits_per_byte(name, HELDOUT)
    assert measured == pytest.approx(training(name)["fixture_heldout_bits_per_byte"], abs=2e-3)
    assert measured < 0.7 * unigram_bits_per_byte(HELDOUT)


@pytest.mark.parametrize("name", SHIPPED)
def test_greedy_continuation_is_made_of_real_words(name: str) -> None:
    model = load_model(name)
    prompt = "To be, or not to be"
    trace = model.trace(model.tokenizer.encode(prompt), steps=150, record=False)
    text = model.tokenizer.decode(trace.generated_ids)
    generated = re.findall(r"[a-z]+", text.lower())
    known = set(re.findall(r"[a-z]+", HELDOUT.decode("utf-8").lower()))
    assert len(generated) >= 15
    assert sum(word in known for word in generated) >= 0.6 * len(generated), text


@pytest.mark.parametrize("name", SHIPPED)
def test_the_model_file_is_small_and_its_config_complete(name: str) -> None:
    size = (shipped_model_dir(name) / "model.safetensors").stat().st_size
    assert size <= 6 * 1024 * 1024
    model = load_model(name)
    assert 300_000 <= model.config.n_params <= 1_500_000
    assert model.config.n_ctx >= 256
    assert model.tokenizer.eot_id == 256
    assert {"steps", "seed", "seconds", "corpus"} <= set(training(name))


def test_the_sliding_model_alternates_windows_of_32_with_full_layers() -> None:
    model = load_model("tiny-swa")
    assert model.config.windows == (32, None, 32, None)
    assert model.config.n_kv_head < model.config.n_head
    trace = model.trace(model.tokenizer.encode("To be"), steps=48)
    assert trace.step_masks == 0  # the ring buffer held exactly the window at every step
    assert trace.kv_cache_bytes == 2 * 2 * 2 * 40 * 4 * (53 + 32)  # 2 full + 2 sliding layers


@pytest.mark.parametrize(
    ("name", "sampling"),
    [("tiny", {"temperature": 1.5, "seed": 91}), ("tiny-swa", {})],
)
def test_the_kv_cache_formula_adds_up_to_the_bytes_of_the_positions_held(
    name: str, sampling: dict[str, Any]
) -> None:
    model = load_model(name)
    trace = model.trace(model.tokenizer.encode("ROMEO:"), steps=60, **sampling)
    if name == "tiny":  # stopped early: the cache allocated 66 positions, held 40
        assert (trace.stop_reason, trace.n_tokens) == ("end_of_text", 40)
    total = 0
    for term in trace.kv_formula.split(" + "):
        factors = [int(f) for f in re.findall(r"\d+", re.sub(r"\(.*?\)", "", term))]
        total += int(np.prod(factors))
    assert total == trace.kv_cache_bytes > 0
