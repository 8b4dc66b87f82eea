"""`maskviz.errors`: the checks every part of the library refuses bad input with."""

from __future__ import annotations

import pytest

from maskviz.errors import MaskvizError, check_labels, first_line, index_in


def test_an_index_is_refused_from_the_count_on_and_below_zero() -> None:
    assert index_in(3, 4, "head") == 3
    for index in (4, -1):
        with pytest.raises(MaskvizError, match=rf"^head {index} is outside 0\.\.3$"):
            index_in(index, 4, "head")


@pytest.mark.parametrize("labels", [["a"], ["a", "b", "c"]])
def test_labels_are_refused_unless_one_per_position(labels: list[str]) -> None:
    check_labels(["a", "b"], 2)
    with pytest.raises(
        MaskvizError, match=rf"^expected 2 labels \(one per position\), got {len(labels)}$"
    ):
        check_labels(labels, 2)


def test_a_failures_first_line_is_quoted_or_its_type_when_it_says_nothing() -> None:
    assert first_line(OSError("  disk full\nerrno 28 details")) == "disk full"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(ValueError("   ")) == "ValueError"
