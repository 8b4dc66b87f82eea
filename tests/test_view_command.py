"""`maskviz view FILE`: a saved trace drawn again, exactly as `trace` drew it, without the model."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("suffix", [".npz", ".json"])
@pytest.mark.parametrize("choice", [[], ["--layer", "2", "--heads", "all"], ["--agg", "max"]])
def test_view_redraws_what_trace_saved(tmp_path: Path, suffix: str, choice: list[str]) -> None:
    path = tmp_path / f"t{suffix}"
    traced = run_cli(
        "trace", "To be, or not to be", "--steps", "6", "--plain", *choice, "--save", str(path)
    )
    assert traced.exit_code == 0, traced.stderr
    viewed = run_cli("view", str(path), "--plain", *choice)
    assert viewed.exit_code == 0, viewed.stderr
    assert viewed.stdout == traced.stdout.removesuffix(f"saved {path}\n")


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_a_trace_saved_by_0_1_0_still_opens(suffix: str) -> None:
    result = run_cli("view", str(FIXTURES / f"trace-0.1.0{suffix}"), "--plain")
    assert result.exit_code == 0, result.stderr
    assert "mode cached · greedy" in result.stdout
    assert result.stdout.count("\n1 ") + result.stdout.count("\n 1 ") >= 1


def test_view_saves_pictures_and_converts_traces(tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    assert run_cli("trace", "To be", "--steps", "3", "--save", str(path)).exit_code == 0
    for name in ("again.png", "again.json", "again.gif"):
        result = run_cli("view", str(path), "--save", str(tmp_path / name))
        assert result.exit_code == 0, result.stderr
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["missing.npz"], 1, "missing.npz: no such file"),
        (["missing.json"], 1, "missing.json: no such file"),
        (["pipe.npz"], 1, "pipe.npz: not a regular file"),
        (["pipe.json"], 1, "pipe.json: not a regular file"),  # never read: it would not end
        (["folder.json"], 1, "folder.json: is a folder, not a trace file"),
        (["garbage.npz"], 1, "garbage.npz: not a trace: not an .npz (zip) archive"),
        (
            ["garbage.json"],
            1,
            "garbage.json: not a trace: not valid JSON (Expecting value, line 1)",
        ),
        (["picture.png"], 2, "picture.png: not a trace file: traces are .npz or .json files"),
        (["t.npz", "--layer", "9"], 2, "--layer 9 was not recorded"),
        (["t.npz", "--head", "1", "--agg", "mean"], 2, "--head cannot be combined with --agg"),
        (["t.npz", "--save", "x.txt"], 2, "extension '.txt'"),
        ([""], 2, "the trace file's name is empty"),  # not the current folder
        (
            ["binary.json"],
            1,
            "binary.json: not a trace: not JSON text (byte 0x89 at offset 0 is not UTF-8)",
        ),
        (["t.npz", "--save", ""], 2, "cannot save to '': the name is empty"),
    ],
)
def test_files_it_cannot_trust_and_bad_choices_get_one_line(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    for name in ("garbage.npz", "garbage.json", "picture.png"):
        (tmp_path / name).write_bytes(b"not a zip file")
    for name in ("pipe.npz", "pipe.json"):
        os.mkfifo(tmp_path / name)  # there, but reading it would wait forever
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "binary.json").write_bytes(b"\x89PNG\r\n")  # a picture renamed
    assert (
        run_cli("trace", "To be", "--steps", "2", "--save", str(tmp_path / "t.npz")).exit_code == 0
    )
    args = [str(tmp_path / a) if a.endswith((".npz", ".txt", ".json", ".png")) else a for a in args]
    result = run_cli("view", *args)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_trace_that_recorded_no_head_is_a_usage_error(tmp_path: Path) -> None:
    from maskviz import load_model

    path, unrecorded = tmp_path / "t.npz", tmp_path / "none.npz"
    load_model().trace([84, 111], steps=1, heads=[]).save(path)
    load_model().trace([84, 111], steps=1, record=False).save(unrecorded)
    for file in (path, unrecorded):
        result = run_cli("view", str(file))
        assert result.exit_code == 2
        assert (
            result.stderr
            == f"maskviz: error: {file} recorded no attention head: there is nothing to draw\n"
        )


def test_heads_are_chosen_among_those_the_trace_recorded(tmp_path: Path) -> None:
    from maskviz import load_model

    model = load_model()
    only_2, first_two = tmp_path / "h2.npz", tmp_path / "h01.npz"
    model.trace([84, 111], steps=2, heads=[2]).save(only_2)
    model.trace([84, 111], steps=2, heads=[0, 1]).save(first_two)
    opened = run_cli("view", str(only_2))  # no choice: the first head recorded
    assert opened.exit_code == 0, opened.stderr
    assert "attention of layer 0, head 2;" in opened.stdout
    layer_3 = tmp_path / "l3.npz"
    model.trace([84, 111], steps=2, layers=[3], heads=[1]).save(layer_3)
    opened = run_cli("view", str(layer_3))  # and the first layer recorded
    assert opened.exit_code == 0, opened.stderr
    assert "attention of layer 3, head 1;" in opened.stdout
    for choice, message in (
        (["--heads", "0,3"], "--heads: head 3 was not recorded in the trace (heads [0, 1])"),
        (["--head", "3"], f"--head 3 was not recorded in {first_two} (heads [0, 1])"),
    ):
        refused = run_cli("view", str(first_two), *choice)
        assert (refused.exit_code, refused.stderr.strip()) == (2, f"maskviz: error: {message}")


def test_a_recompute_trace_is_described_as_recomputing_not_as_a_kv_cache(tmp_path: Path) -> None:
    from maskviz import load_model

    model = load_model("tiny-swa")
    path = tmp_path / "r.npz"
    model.trace(model.tokenizer.encode("To be"), steps=40, mode="recompute").save(path)
    result = run_cli("view", str(path), "--plain")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "decoding: no cache, the whole prefix again at every step (masked)" in out
    assert "step 2: 7 queries in one masked pass, this row kept" in out
    assert "KV cache" not in out and "cached key" not in out and "evicted" not in out


@pytest.mark.parametrize(
    "args", [["view", "locked/t.npz"], ["trace", "To be", "--model", "locked/model"]]
)
def test_a_file_behind_a_folder_it_may_not_read_is_named_not_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "locked" / "model").mkdir(parents=True)
    # Python 3.11's Path.is_dir()/is_file() raise, not return False, when a folder on
    # the way may not be searched (chmod 000); root, who runs the tests, is never refused
    real_is_dir, real_is_file = Path.is_dir, Path.is_file

    def refused(real: Any) -> Any:
        def check(self: Path) -> bool:
            if str(self).startswith("locked"):
                raise PermissionError(13, "Permission denied", str(self))
            return bool(real(self))

        return check

    monkeypatch.setattr(Path, "is_dir", refused(real_is_dir))
    monkeypatch.setattr(Path, "is_file", refused(real_is_file))
    result = run_cli(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith("maskviz: error: locked/")
    assert result.stderr.endswith(": Permission denied\n") and result.stderr.count("\n") == 1


def test_views_from_python_refuse_layers_heads_and_labels_that_name_nothing() -> None:
    from maskviz import MaskvizError, load_model, masks
    from maskviz.compare import compare
    from maskviz.render.figures import mask_figure
    from maskviz.similarity import similarity
    from maskviz.view import comparison_view, mask_view, similarity_view, trace_view

    model = load_model()
    ids = [84, 111, 32]
    result = compare(model, "training-vs-cached", ids, steps=2)
    labels = [str(i) for i in result.token_ids]
    pair = similarity(model, "to be", "or not")
    pair_labels = [[str(i) for i in o.token_ids] for o in (pair.forward, pair.backward)]
    trace = model.trace(ids, steps=1, layers=[2], heads=[1, 3])
    refusals: list[tuple[Any, str]] = [
        (lambda: comparison_view(result, labels, head=-1), "head -1 is outside 0..3"),
        (lambda: comparison_view(result, labels, layer=9), "layer 9 is outside 0..3"),
        (
            lambda: comparison_view(result, labels[:1]),
            "expected 5 labels (one per position), got 1",
        ),
        (lambda: similarity_view(pair, pair_labels, head=-1), "head -1 is outside 0..3"),
        (lambda: similarity_view(pair, pair_labels, layer=4), "layer 4 is outside 0..3"),
        (lambda: similarity_view(pair, [[], []]), "expected"),
        (lambda: trace_view(trace, heads=[]), "heads: name at least one head"),
        (lambda: trace_view(trace, heads=[3, 3]), "heads must not repeat, got [3, 3]"),
        (
            lambda: similarity_view(pair, pair_labels[:1]),
            "labels: one list per ordering (2), got 1",
        ),
        (lambda: mask_figure(masks.causal(4), labels=["a"]), "expected 4 labels"),
        (
            lambda: mask_figure(masks.causal(4), highlight=9),
            "highlighted row 9 is outside 0..3",
        ),
        (lambda: mask_figure(masks.causal(4), padded=[4]), "padded position 4 is outside 0..3"),
        (lambda: mask_view(masks.causal(4), highlight=-1), "highlighted row -1 is outside 0..3"),
    ]
    for call, message in refusals:
        with pytest.raises(MaskvizError, match=re.escape(message)) as info:
            call()
        assert info.value.exit_code == 2
    # with no choice, a view draws the first layer and head the trace recorded
    assert trace_view(trace).panels[0].title == "layer 2, head 1"


def test_savers_from_python_take_str_paths_and_refuse_other_formats_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maskviz import MaskvizError, load_model, masks
    from maskviz.render.figures import mask_figure, save_figure
    from maskviz.render.save import save_mask, save_view
    from maskviz.view import trace_view

    monkeypatch.chdir(tmp_path)
    save_view(trace_view(load_model().trace([84, 111], steps=1)), "v.png")
    save_mask(masks.causal(4), "m.svg")
    for call, name in (
        (lambda: save_view(trace_view(load_model().trace([84], steps=1)), "v.txt"), "v.txt"),
        (lambda: save_mask(masks.causal(4), "m.gif"), "m.gif"),
        (lambda: save_figure(mask_figure(masks.causal(4)), "f.jpg"), "f.jpg"),
    ):
        with pytest.raises(MaskvizError, match=rf"cannot save to '{name}': extension") as info:
            call()
        assert info.value.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.svg", "v.png"]


def test_every_layers_view_at_once_equals_each_layers_own_and_reads_the_rows_once_a_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numpy as np

    from maskviz import MaskvizError, Trace, load_model
    from maskviz.view import trace_view, trace_views

    model = load_model("tiny-swa")  # layers 0 and 2 slide over 32 keys; 1 and 3 see all
    trace = model.trace(model.tokenizer.encode("To be, or not"), steps=30)
    calls = 0
    probs = Trace.next_token_probs

    def counted(self: Trace, t: int, k: int) -> Any:
        nonlocal calls
        calls += 1
        return probs(self, t, k)

    monkeypatch.setattr(Trace, "next_token_probs", counted)
    views = trace_views(trace, [0, 2])
    assert calls == 2 * (trace.n_tokens - trace.prompt_len + 1)  # two window sizes, not 4 layers
    for layer, view in enumerate(views):
        one = trace_view(trace, layer=layer, heads=[0, 2])
        assert (view.title, view.header, view.caption) == (one.title, one.header, one.caption)
        for mine, theirs in zip(view.panels, one.panels, strict=True):
            assert np.array_equal(mine.weights, theirs.weights)
            assert np.array_equal(mine.states, theirs.states)
            assert (mine.notes, mine.details) == (theirs.notes, theirs.details)
    assert views[0].title != views[2].title  # each names its own layer
    for heads, refused in (([], "name at least one head"), ([1, 1], "must not repeat")):
        with pytest.raises(MaskvizError, match=refused):
            trace_views(trace, heads)
