"""`maskviz compare` and `maskviz similarity`: verdicts, exit codes, JSON, cost formulas."""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskviz import GPTConfig, LlamaConfig, MaskvizError, random_model
from maskviz.compare import PAIRS, compare, score_spread, tolerance
from maskviz.similarity import similarity
from tests.conftest import run_cli

FIXTURE = str(Path(__file__).parent / "fixtures" / "gpt2-tiny")
LLAMA = Path(__file__).parent / "fixtures" / "llama-tiny"
# learned absolute positions make shifted position ids a different input
DIFFERING_ON_GPT2 = ("unmasked-vs-cached", "shifted-vs-cached")
AGREEING = [p for p in PAIRS if p not in DIFFERING_ON_GPT2]


@pytest.mark.parametrize("pair", PAIRS)
def test_verdict_and_exit_code_on_a_checkpoint(pair: str) -> None:
    result = run_cli(
        "compare", pair, "--model", FIXTURE, "--prompt", "The cat sat", "--steps", "6", "--plain"
    )
    expected = 1 if pair in DIFFERING_ON_GPT2 else 0
    assert result.exit_code == expected, result.stderr
    last = " ".join(result.stdout.split()[-30:])
    if expected == 0:
        assert "identical up to float rounding" in last
    else:
        assert "DIFFERENT: first at row" in last


configs = st.builds(
    lambda layers, heads, hd, vocab: GPTConfig(layers, heads, heads * hd, 24, vocab),
    layers=st.integers(1, 3),
    heads=st.integers(1, 3),
    hd=st.integers(2, 8),
    vocab=st.integers(5, 60),
)


@settings(max_examples=30)
@given(
    cfg=configs,
    seed=st.integers(0, 999),
    dtype=st.sampled_from(["float32", "float64"]),
    data=st.data(),
)
def test_every_pair_gives_its_verdict_on_random_models(
    cfg: GPTConfig, seed: int, dtype: str, data: st.DataObject
) -> None:
    model = random_model(cfg, seed=seed, dtype=dtype)  # type: ignore[arg-type]
    p = data.draw(st.integers(2, 8))
    prompt = data.draw(st.lists(st.integers(0, cfg.vocab_size - 1), min_size=p, max_size=p))
    steps = data.draw(st.integers(1, 8))
    for pair, side in [(p, "right") for p in AGREEING] + [("padded-vs-cached", "left")]:
        result = compare(model, pair, prompt, steps, side=side)  # type: ignore[arg-type]
        assert result.agree, (pair, result.max_abs_diff_attention, result.max_abs_diff_logits)
        assert result.first_differing_row is None
    unmasked = compare(model, "unmasked-vs-cached", prompt, steps)
    assert not unmasked.agree
    # row 0 sees keys after it; in layer 0 the last row sees exactly what it would with the
    # mask (deeper layers' keys were computed from rows that saw the future)
    assert unmasked.first_differing_row == 0
    layer0 = np.abs(unmasked.a.attention[0, :, -1] - unmasked.b.attention[0, :, -1]).max()
    assert layer0 <= unmasked.tolerance_attention


def test_json_has_the_documented_fields() -> None:
    result = run_cli(
        "compare",
        "padded-vs-cached",
        "--model",
        FIXTURE,
        "--prompt",
        "The cat",
        "--steps",
        "3",
        "--json",
    )
    data = json.loads(result.stdout)
    assert {"pair", "dtype", "tolerance", "agree", "max_abs_diff_attention", "max_abs_diff_logits",
            "first_differing_row", "per_layer", "cost"} <= set(data)  # fmt: skip
    assert {"macs_a", "macs_b", "seconds_a", "seconds_b"} <= set(data["cost"])
    assert data["pair"] == "padded-vs-cached"
    assert data["agree"] is True
    assert data["first_differing_row"] is None
    assert len(data["per_layer"]) == 2
    unmasked = json.loads(
        run_cli("compare", "unmasked-vs-cached", "--model", FIXTURE, "--json").stdout
    )
    assert unmasked["agree"] is False
    assert unmasked["first_differing_row"] == 0


def test_cost_formulas_match_hand_counts() -> None:
    cfg = GPTConfig(n_layer=2, n_head=1, n_embd=4, n_ctx=16, vocab_size=10)
    # one token, 3 keys: 2 layers x (12*16 + 2*4*3) + 10*4 = 2 * 216 + 40
    assert cfg.pass_macs(1, 3, 1) == 472
    # training pass over 5 tokens: 2 x (12*16*5 + 2*4*25) + 10*4*5
    assert cfg.pass_macs(5, 5, 5) == 2 * (960 + 200) + 200
    # cached: prefill of 3 (2 x (576 + 72) + 120) then steps with 4 and 5 keys
    prefill = 2 * (12 * 16 * 3 + 2 * 4 * 9) + 120
    steps = sum(2 * (192 + 2 * 4 * k) + 40 for k in (4, 5))
    model = random_model(cfg)
    assert compare(model, "training-vs-cached", [1, 2, 3], 2).b.macs == prefill + steps


def test_recompute_grows_per_step_and_cached_stays_flat() -> None:
    model = random_model(GPTConfig(2, 2, 16, 64, 30))
    result = compare(model, "recompute-vs-cached", [1, 2], 30)
    recompute, cached = result.a, result.b
    assert recompute.step_macs[-1] > 10 * recompute.step_macs[0]
    assert cached.step_macs[-1] < 2 * cached.step_macs[0]
    assert recompute.macs > 5 * cached.macs


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sideways"], "'sideways' is not one of"),
        (["training-vs-cached", "--prompt", ""], "prompt is empty"),
        (["training-vs-cached", "--steps", "0"], "--steps must be >= 1"),
        (["training-vs-cached", "--steps", "64"], "exceeds the model's context"),
        # a prompt that fills the context leaves no step: compare needs one, so no --steps 0
        (["training-vs-cached", "--prompt", "x" * 64], "64 positions: shorten the prompt"),
        (["training-vs-cached", "--layer", "7"], "--layer 7 is out of range"),
        (["training-vs-cached", "--save", "x.gif"], "extension '.gif'"),
    ],
)
def test_bad_compare_input_exits_2(args: list[str], message: str) -> None:
    result = run_cli("compare", *args[:1], "--model", FIXTURE, *args[1:])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


def test_compare_saves_a_three_panel_figure(tmp_path: Path) -> None:
    target = tmp_path / "cmp.png"
    result = run_cli(
        "compare", "unmasked-vs-cached", "--model", FIXTURE, "--steps", "3", "--save", str(target)
    )
    assert result.exit_code == 1
    assert target.stat().st_size > 1000


@settings(max_examples=20)
@given(
    a=st.text(min_size=1, max_size=12).filter(lambda t: "$" not in t),
    b=st.text(min_size=1, max_size=12).filter(lambda t: "$" not in t),
)
def test_similarity_is_symmetric(a: str, b: str) -> None:
    model = random_model(GPTConfig(2, 2, 16, 128, 257), seed=5)
    ab, ba = similarity(model, a, b), similarity(model, b, a)
    np.testing.assert_array_equal(ab.representation, ba.representation)
    assert ab.cosine == pytest.approx(ba.cosine)


def test_similarity_reads_the_last_position_of_one_causal_pass() -> None:
    model = random_model(GPTConfig(2, 2, 16, 128, 257), seed=5)
    result = similarity(model, "a cat", "a dog")
    ids = result.forward.token_ids
    assert ids.tolist() == [*b"a cat", ord("$"), *b"a dog"]
    np.testing.assert_array_equal(result.forward.last_hidden, model.final_hidden(ids)[-1])
    # the last position attends to all 11 tokens; earlier ones never to later ones
    att = result.forward.attention
    assert (att[:, :, -1] > 0).all()
    assert (np.triu(att[0, 0], k=1) == 0).all()


def test_similarity_cli_output_and_errors() -> None:
    result = run_cli("similarity", "The cat", "A dog", "--model", FIXTURE, "--plain")
    assert result.exit_code == 0
    flat = " ".join(result.stdout.split())
    assert "[TEXT1; delim; TEXT2]" in flat and "[TEXT2; delim; TEXT1]" in flat
    assert "cosine similarity of the two last states" in flat
    assert "only the last position's output is read" in flat
    assert run_cli("similarity", "", "x", "--model", FIXTURE).exit_code == 2
    bad = run_cli("similarity", "a", "b", "--delimiter", "$$$ ##", "--model", FIXTURE)
    assert bad.exit_code == 2
    assert "not a single token" in bad.stderr
    data = json.loads(run_cli("similarity", "a", "b", "--model", FIXTURE, "--json").stdout)
    assert {"cosine", "representation_norm", "forward_ids", "backward_ids"} <= set(data)


@pytest.mark.parametrize(("texts", "name"), [(["a$b", "c"], "text1"), (["a", "c $"], "text2")])
def test_similarity_refuses_a_text_that_holds_the_delimiter(texts: list[str], name: str) -> None:
    # the ordering would hold two delimiters, and only one would mark the boundary
    result = run_cli("similarity", *texts, "--model", FIXTURE)
    assert result.exit_code == 2
    assert result.stderr == (
        f"maskviz: error: {name} contains the delimiter '$': choose a delimiter the texts "
        "do not hold\n"
    )
    assert run_cli("similarity", *texts, "--delimiter", "|", "--model", FIXTURE).exit_code == 0


def test_a_table_title_wraps_to_the_terminal_not_to_a_narrow_table() -> None:
    # a small model's cost table is narrower than its title: Rich wrapped the title to it
    result = run_cli(
        "compare", "training-vs-cached", "--model", str(Path(__file__).parent / "fixtures" / "llama-tiny"),
        "--steps", "2", "--prompt", "hi", "--plain",
    )  # fmt: skip
    assert result.exit_code == 0
    assert "cost (MACs = multiply-accumulates of the matrix products)\n" in result.stdout


def test_cost_table_layout_does_not_depend_on_how_fast_the_machine_was() -> None:

    from rich.console import Console

    from maskviz.render.grid import render_view
    from maskviz.view import comparison_view

    model = random_model(GPTConfig(2, 2, 16, 32, 50), seed=0)
    result = compare(model, "padded-vs-cached", [1, 2, 3], 5)

    def render(scale: float) -> list[str]:
        sides = {
            side: replace(
                getattr(result, side),
                seconds=getattr(result, side).seconds * scale,
                step_seconds=getattr(result, side).step_seconds * scale,
            )
            for side in ("a", "b")
        }
        console = Console(width=80, record=True, color_system=None, file=io.StringIO())
        labels = [str(i) for i in result.token_ids]
        console.print(render_view(comparison_view(replace(result, **sides), labels), plain=True))
        return console.export_text().splitlines()

    fast, slow = render(1e-3), render(1e4)  # microseconds against whole minutes
    assert len(fast) == len(slow)
    assert [len(line.rstrip()) for line in fast] == [len(line.rstrip()) for line in slow]
    assert all(len(line.rstrip()) <= 80 for line in slow)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "EMPTY"], "config.json: missing"),
        (["--model", "no-such-user/no-such-model"], "HF_HUB_OFFLINE"),
        (["--save", "MISSING/x.png"], "does not exist"),
        (["--steps", "0"], "--steps must be >= 1"),
        (["--steps", "300"], "use --steps 214 or fewer"),
    ],
)
def test_compare_exits_2_for_trouble_and_keeps_1_for_a_difference(
    tmp_path: Path, args: list[str], message: str
) -> None:
    args = [
        a.replace("EMPTY", str(tmp_path)).replace("MISSING", str(tmp_path / "no")) for a in args
    ]
    result = run_cli("compare", "training-vs-cached", *args, env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("model", "code"), [("tiny", 1), ("tiny-swa", 0)])
def test_shifted_positions_break_learned_positions_but_not_rotary_ones(
    model: str, code: int
) -> None:
    # GPT-2 looks up a vector per position; RoPE scores depend only on distances
    result = run_cli("compare", "shifted-vs-cached", "--model", model, "--steps", "4", "--plain")
    assert result.exit_code == code, result.stderr
    left = run_cli(
        "compare", "padded-vs-cached", "--side", "left", "--model", model, "--steps", "4"
    )
    assert left.exit_code == 0, left.stderr


@pytest.mark.parametrize(
    ("steps", "prompt", "message"),
    [
        (0, [1, 2], "steps must be >= 1"),
        (2.5, [1, 2], "steps: 2.5 is not an integer"),
        ("3", [1, 2], "steps: '3' is not an integer"),
        (2, [1.5, 2], "prompt token ids: 1.5 is not an integer"),
    ],
)
def test_compare_refuses_steps_and_prompts_that_are_not_integers(
    steps: object, prompt: list[object], message: str
) -> None:
    model = random_model(GPTConfig(2, 2, 16, 32, 50), seed=0)
    with pytest.raises(MaskvizError, match=message) as info:
        compare(model, "training-vs-cached", prompt, steps)  # type: ignore[arg-type]
    assert info.value.exit_code == 2


def test_compare_takes_a_numpy_prompt_like_trace() -> None:
    model = random_model(GPTConfig(2, 2, 16, 32, 50), seed=0)
    assert compare(model, "training-vs-cached", np.array([1, 2, 3]), 3).agree


def test_similarity_draws_a_sliding_layer_with_its_window() -> None:
    from maskviz import load_model
    from maskviz.view import ALLOWED, MASKED, similarity_view

    model = load_model("tiny-swa")  # layers 0 and 2 slide over 32 keys, 1 and 3 see all
    result = similarity(model, "The king is dead and buried", "Long live the new king of Rome")
    n = result.forward.token_ids.shape[0]
    assert n > 40
    labels = tuple(str(i) for i in range(n))
    for layer, window in ((0, 32), (1, None)):
        view = similarity_view(result, (labels, labels), layer=layer, head=0)
        panel = view.panels[0]
        far = panel.states[n - 1, : n - 32]  # keys more than 31 places back from the last row
        assert (far == (MASKED if window else ALLOWED)).all()
        assert (result.forward.attention[layer, 0, n - 1, : n - 32] == 0).all() == bool(window)
        assert ("sees its window" in panel.notes[n - 1]) == bool(window)
        # worded as trace's header words it
        assert ("causal & sliding window 32 mask" in panel.title) == bool(window)


@pytest.mark.parametrize(
    ("windows", "unreachable", "said"),
    [
        ((3, 3), 14 - 1 - 4, "keep the first 9 tokens of each ordering from reaching it"),
        ((8, 8), 0, "far tokens reach it only through nearer positions"),
        ((3, None), 0, "the one position that attends to every token of both texts"),
    ],
)
def test_similarity_says_which_tokens_can_reach_the_last_state(
    windows: tuple[int | None, ...], unreachable: int, said: str
) -> None:
    from maskviz.view import similarity_view

    model = random_model(LlamaConfig(2, 2, 1, 8, 16, 32, 64, 300, windows=windows), seed=2)
    texts = ("abcdefg", "hijklm")  # 7 + 1 + 6 = 14 byte tokens
    result = similarity(model, *texts)
    assert result.forward.unreachable == result.backward.unreachable == unreachable
    assert result.to_dict()["unreachable_tokens"] == unreachable
    footer = " ".join(similarity_view(result, (("",) * 14,) * 2).footer)
    assert said in footer
    # the claim holds: the first tokens cannot change the last state
    changed = similarity(model, "XYZdefg", "hijklm")
    same = np.array_equal(changed.forward.last_hidden, result.forward.last_hidden)
    assert same == (unreachable >= 3)


def test_labels_given_as_an_array_are_drawn_as_a_list_would_be() -> None:
    from maskviz import load_model
    from maskviz.view import similarity_view

    pair = similarity(load_model("tiny"), "ab", "cd")
    given = np.array([list("ab$cd"), list("cd$ab")])
    shown = similarity_view(pair, given).panels
    assert [p.labels for p in shown] == [tuple("ab$cd"), tuple("cd$ab")]


def test_a_run_past_the_context_is_refused_in_the_librarys_words() -> None:
    model = random_model(GPTConfig(1, 2, 8, 8, 20), seed=0)
    with pytest.raises(MaskvizError) as caught:
        compare(model, "training-vs-cached", [1, 2, 3], 10)
    assert str(caught.value) == (
        "the prompt (3 tokens) plus 10 steps exceeds the model's context of 8 positions: "
        "use 5 steps or fewer"
    )


def test_a_similarity_in_a_notebook_labels_byte_tokens_by_their_bytes() -> None:
    from maskviz import load_model

    page = similarity(load_model("tiny"), "ab", "cd")._repr_html_()
    assert page is not None
    assert '"<id:97>"' not in page and '["a","b","$","c","d"]' in page


def test_results_keep_their_tokenizers_labels_for_notebooks_and_views() -> None:
    from maskviz import load_model
    from maskviz.view import comparison_view, similarity_view

    model = load_model(str(LLAMA))  # a tokenizer.json of its own, with a BOS token
    ids = model.tokenizer.encode("the cat")
    words = [model.tokenizer.token_label(int(i)) for i in ids]
    assert len(words) >= 3 and not any(w.startswith("<id:") for w in words[1:])
    result = compare(model, "training-vs-cached", ids, 2)
    assert list(result.labels[: len(ids)]) == words
    assert result.model_name == model.name
    view = comparison_view(result)
    assert view.panels[0].labels == result.labels and model.name in view.title
    assert comparison_view(result, ["x"] * len(result.labels)).panels[0].labels[0] == "x"
    page = result._repr_html_()
    assert page is not None and '"t","he","␣c","at"' in page  # the page's display labels
    pair = similarity(model, "the cat", "a dog")
    shown = similarity_view(pair).panels
    assert [p.labels for p in shown] == [pair.forward.labels, pair.backward.labels]
    assert "<id:" not in " ".join(pair.forward.labels)
    # built by hand, without labels: bytes or ids, never a failure
    bare = replace(result, labels=())
    assert comparison_view(bare).panels[0].labels[0] == f"<id:{ids[0]}>"


def test_shifted_vs_cached_says_why_it_agrees_or_not() -> None:
    gpt2 = run_cli("compare", "shifted-vs-cached", "--steps", "3", "--plain")
    rotary = run_cli(
        "compare", "shifted-vs-cached", "--model", "tiny-swa", "--steps", "3", "--plain"
    )
    assert (gpt2.exit_code, rotary.exit_code) == (1, 0)
    assert "learned one embedding per absolute position" in " ".join(gpt2.stdout.split())
    assert "positions are rotary" in " ".join(rotary.stdout.split())
    plain = run_cli("compare", "training-vs-cached", "--steps", "3", "--plain").stdout
    assert "why:" not in plain
    data = json.loads(run_cli("compare", "shifted-vs-cached", "--steps", "3", "--json").stdout)
    assert data["note"].startswith("why: this model learned one embedding")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rounding_on_sharp_attention_is_not_called_a_difference(dtype: str) -> None:
    # scores up to ~70: each weight's rounding error grows with them, past a fixed 1024 eps
    cfg = LlamaConfig(4, 4, 2, 64, 128, 256, n_ctx=128, vocab_size=300, rope_theta=1e5)
    model = random_model(cfg, seed=0, dtype=dtype)
    for layer in model.weights.layers:
        layer.qkv_w[:, : 6 * 64] *= 2.0  # q and k
    prompt = np.random.default_rng(1).integers(0, 300, 100).tolist()
    shifted = compare(model, "shifted-vs-cached", prompt, 4)
    assert shifted.max_abs_diff_attention > tolerance(dtype)  # beyond a fixed 1024 eps
    assert shifted.agree, (shifted.max_abs_diff_attention, shifted.tolerance_attention)
    unmasked = compare(model, "unmasked-vs-cached", prompt, 4)
    assert not unmasked.agree
    assert unmasked.max_abs_diff_attention > 10 * unmasked.tolerance_attention


def test_score_spread_reads_score_differences_back_from_softmax_weights() -> None:
    scores = np.array([[[0.0, -2.0, -5.0], [1.0, 1.0, -np.inf]]])  # [1, 2 queries, 3 keys]
    weights = np.exp(scores) / np.exp(scores).sum(axis=-1, keepdims=True)
    assert score_spread(weights) == pytest.approx(5.0)
    assert score_spread(np.zeros((2, 3, 3))) == 0.0  # rows that attend to nothing
    # a key weighed below rounding is left out
    assert score_spread(np.array([[1.0, 1e-10, 1e-300]])) == pytest.approx(10 * np.log(10))


def test_a_difference_in_logits_or_tokens_alone_is_a_difference() -> None:
    from dataclasses import replace

    model = random_model(GPTConfig(2, 2, 16, 64, 50), seed=1)
    result = compare(model, "training-vs-cached", [1, 2, 3], 4)
    assert result.agree
    logits = result.a.logits.copy()
    logits[-1, 0] += 10 * result.tolerance_logits
    assert not replace(result, a=replace(result.a, logits=logits)).agree
    choices = result.a.choices.copy()
    choices[-1] = (choices[-1] + 1) % 50
    changed = replace(result, a=replace(result.a, choices=choices))
    assert not changed.tokens_agree and not changed.agree


def test_side_is_refused_for_pairs_other_than_padded() -> None:
    result = run_cli("compare", "training-vs-cached", "--model", FIXTURE, "--side", "left")
    assert result.exit_code == 2
    assert "--side applies to padded-vs-cached, not training-vs-cached" in result.stderr


def test_pad_rows_attend_to_nothing_and_no_row_attends_to_a_pad() -> None:
    for model in (
        random_model(GPTConfig(2, 2, 16, 64, 50), seed=2),
        random_model(LlamaConfig(2, 4, 2, 4, 16, 32, 64, 50, windows=(2, None)), seed=2),
    ):
        # left pads, and right pads (whose rows the causal rule alone would let attend)
        for padded in (np.array([1, 1, 0, 0, 0], bool), np.array([0, 0, 0, 1, 1], bool)):
            _, attention = model.forward([7, 1, 2, 3, 7], padded=padded)
            assert (attention[:, :, :, padded] == 0).all()  # no query attends to a pad
            assert (attention[:, :, padded] == 0).all()  # a pad's own row is empty
            assert np.isfinite(attention).all()
            np.testing.assert_allclose(attention[:, :, ~padded].sum(-1), 1, rtol=1e-5)


def test_every_rows_note_stays_on_its_row_when_narrower_cells_make_room() -> None:
    # long labels ("<|begin_of_text|>") leave no room for spaced cells and the |Δ| notes
    # side by side: one character per key keeps each note on its row, not a line below
    llama = str(Path(__file__).parent / "fixtures" / "llama-tiny")
    out = run_cli(
        "compare", "training-vs-cached", "--model", llama, "--steps", "4",
        "--prompt", "The cat sat on the mat",
    ).stdout  # fmt: skip
    rows = [line for line in out.splitlines() if "│" in line]
    assert len(rows) == 14
    # the cached side leaves keys not generated yet blank: spaces before the note
    assert all(re.search(r"│ \S+ +\d\.\de[+-]\d\d", row) for row in rows), rows
    assert max(len(line) for line in out.splitlines()) <= 80


def test_results_print_in_one_short_line_and_compare_without_raising() -> None:
    model = random_model(GPTConfig(2, 2, 8, 16, 20), seed=1)
    result = compare(model, "training-vs-cached", [1, 2, 3], 4)
    text = repr(result)
    assert text.startswith("<Comparison training-vs-cached: agree, 7 tokens") and len(text) < 120
    assert result == result and result != compare(model, "training-vs-cached", [1, 2, 3], 4)
    trace = model.trace([1, 2, 3], steps=4)
    assert repr(trace) == (
        "<Trace of random(seed=1): cached, 7 tokens (prompt 3), layers [0, 1], heads [0, 1], float32>"
    )
    pair = similarity(model, "1 2", "2 1", delimiter="5")
    assert repr(pair).startswith("<Similarity: cosine ") and len(repr(pair)) < 100
