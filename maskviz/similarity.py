"""The GPT similarity trick: both orderings, one masked pass each, last position read.

For a symmetric task such as text similarity, GPT (Radford et al. 2018) feeds
``[text1; delim; text2]`` and ``[text2; delim; text1]``, each once, with the causal
mask exactly as in training; no generation, no cache. The last position is the
only one that sees the whole sequence, so its final hidden state (after ln_f) is
read from each pass and the two are added to form the pair's representation.

A tokenizer that prompts with a BOS (``tokenizer.prefix_ids``) gets it once, at the
start of each ordering: never before the delimiter or the second text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from maskviz.errors import usage_error
from maskviz.masks import Mask
from maskviz.model import GPT, check_model
from maskviz.tokenizer import check_ids
from maskviz.trace import FloatArray


@dataclass(frozen=True, eq=False)  # equal only to itself: its fields are arrays
class Ordering:
    """One pass: tokens, where each segment starts, attention [L, H, T, T], each layer's
    mask rule (causal, or causal & its sliding window), final state [C]."""

    token_ids: NDArray[np.int64]
    # start of first text (after any BOS), delimiter position, start of second text
    segments: tuple[int, int, int]
    attention: FloatArray
    rules: tuple[Mask, ...]
    last_hidden: FloatArray
    labels: tuple[str, ...] = ()  # [T] each token as the model's tokenizer writes it

    @property
    def first_keys(self) -> tuple[int, ...]:
        """Each layer's first key the last position may attend (0: every token)."""
        n = int(self.token_ids.shape[0])
        return tuple(rule.allowed_keys(n - 1)[0][0] for rule in self.rules)

    @property
    def unreachable(self) -> int:
        """How many leading tokens cannot change the last state at all: 0 when some layer
        lets the last position attend every token, else those beyond the layers' combined
        reach (a layer whose last row starts at key k reaches T - 1 - k positions further
        back: W - 1 for a sliding window of W).

        >>> from maskviz.masks import causal, sliding_window
        >>> rule = causal(10) & sliding_window(10, 3)
        >>> Ordering(np.zeros(10, np.int64), (0, 4, 5), np.zeros(0), (rule, rule), np.zeros(1)).unreachable
        5
        """
        first = self.first_keys
        if 0 in first:
            return 0
        last = int(self.token_ids.shape[0]) - 1
        return max(0, last - sum(last - k for k in first))


@dataclass(frozen=True, eq=False, repr=False)
class Similarity:
    """A pair of texts read both ways, each ordering one masked pass (`Ordering`):
    ``forward`` is [text1; delim; text2], ``backward`` [text2; delim; text1].

    ``representation`` [C] is the sum of both orderings' last hidden states, the pair's
    order-independent representation; ``cosine`` compares the two last states.
    """

    forward: Ordering  # [text1; delim; text2]
    backward: Ordering  # [text2; delim; text1]
    vocab_size: int = 0  # the model's, for token labels of orderings that hold none

    @property
    def representation(self) -> FloatArray:
        """The pair's representation: the sum of both last hidden states [C]."""
        out: FloatArray = self.forward.last_hidden + self.backward.last_hidden
        return out

    @property
    def cosine(self) -> float:
        a = self.forward.last_hidden.astype(np.float64)
        b = self.backward.last_hidden.astype(np.float64)
        norms = float(np.linalg.norm(a) * np.linalg.norm(b))
        return float(a @ b) / max(norms, 1e-300)

    def __repr__(self) -> str:
        n = (self.forward.token_ids.shape[0], self.backward.token_ids.shape[0])
        return f"<Similarity: cosine {self.cosine:.4f}, orderings of {n[0]} and {n[1]} tokens>"

    def _repr_html_(self) -> str | None:
        """A notebook shows both orderings interactively."""
        from maskviz.render.html import repr_html, similarity_page

        return repr_html(lambda: similarity_page(self))

    def to_dict(self) -> dict[str, Any]:
        return {
            "forward_ids": self.forward.token_ids.tolist(),
            "backward_ids": self.backward.token_ids.tolist(),
            "forward_segments": list(self.forward.segments),
            "backward_segments": list(self.backward.segments),
            "cosine": self.cosine,
            "unreachable_tokens": self.forward.unreachable,  # the same in both orderings
            "representation_norm": float(np.linalg.norm(self.representation.astype(np.float64))),
            "representation": self.representation.tolist(),
        }


def _body(model: GPT, text: str) -> list[int]:
    """``text``'s tokens without the prefix (BOS) the tokenizer puts before every text."""
    ids, prefix = model.tokenizer.encode(text), list(model.tokenizer.prefix_ids)
    return ids[len(prefix) :] if ids[: len(prefix)] == prefix else ids


def delimiter_id(model: GPT, delimiter: str) -> int:
    """The single token ``delimiter`` encodes to; refused when it is not one token."""
    ids = _body(model, delimiter) if delimiter else []
    if len(ids) != 1:
        raise usage_error(
            f"delimiter {delimiter!r} is not a single token of this tokenizer ({len(ids)} tokens)"
        )
    return ids[0]


def similarity(model: GPT, text1: str, text2: str, delimiter: str = "$") -> Similarity:
    """Run both orderings once each with the causal mask.

    >>> from maskviz import GPTConfig, random_model
    >>> m = random_model(GPTConfig(2, 2, 16, 64, 257))
    >>> s = similarity(m, "a cat", "a dog")
    >>> bool(np.array_equal(s.representation, similarity(m, "a dog", "a cat").representation))
    True
    """
    check_model(model, "similarity")
    for name, text in (("text1", text1), ("text2", text2), ("delimiter", delimiter)):
        if not isinstance(text, str):
            raise usage_error(f"{name} must be a str, got a {type(text).__name__}")
    d = delimiter_id(model, delimiter)
    a, b = _body(model, text1), _body(model, text2)
    prefix = list(model.tokenizer.prefix_ids)
    for name, ids in (("text1", a), ("text2", b)):
        if not ids:
            raise usage_error(f"{name} is empty")
        if d in ids:  # the orderings would hold it twice, and only one marks the boundary
            raise usage_error(
                f"{name} contains the delimiter {delimiter!r}: choose a delimiter the texts "
                "do not hold"
            )
        check_ids(prefix + ids, model.config.vocab_size)
    n = len(prefix) + len(a) + len(b) + 1
    if n > model.config.n_ctx:
        raise usage_error(
            f"the two texts plus the delimiter are {n} tokens, more than the "
            f"model's context of {model.config.n_ctx}"
        )
    return Similarity(
        _ordering(model, prefix, a, d, b),
        _ordering(model, prefix, b, d, a),
        model.config.vocab_size,
    )


def _ordering(
    model: GPT, prefix: list[int], first: list[int], delim: int, second: list[int]
) -> Ordering:
    ids = np.asarray([*prefix, *first, delim, *second], np.int64)
    hidden, attention = model.forward_hidden(ids)  # one pass, each layer's mask, as in training
    n, d = ids.shape[0], len(prefix) + len(first)
    rules = tuple(model.config.layer_mask(layer, n) for layer in range(model.config.n_layer))
    labels = tuple(model.tokenizer.token_label(int(i)) for i in ids)
    return Ordering(ids, (len(prefix), d, d + 1), attention, rules, hidden[-1], labels)
