"""Checkpoint tensors by name, each checked as an architecture takes it."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from maskviz._text import plural
from maskviz.errors import MaskvizError


def cast(a: NDArray[Any], dtype: str) -> NDArray[Any]:
    """``a`` in ``dtype``, keeping a column-major matrix column-major (a decoding layout);
    a value beyond the dtype's range is an error, not an infinity."""
    fortran = a.ndim == 2 and a.flags.f_contiguous and not a.flags.c_contiguous
    try:
        with np.errstate(over="raise"):
            return np.asfortranarray(a, dtype=dtype) if fortran else np.ascontiguousarray(a, dtype)
    except FloatingPointError:
        raise MaskvizError(
            f"the weights hold {float(np.abs(a).max()):.3g}, beyond {dtype}'s range "
            f"(±{float(np.finfo(dtype).max):.3g}): load the model in float64 (--dtype float64)"
        ) from None


class Tensors:
    """The tensors of a checkpoint, with ``prefix`` stripped from every name.

    `take` refuses, naming the file and tensor, a missing tensor, a non-float one,
    a wrong shape, and NaN or infinity: a bad file never runs.
    """

    def __init__(self, tensors: Mapping[str, NDArray[Any]], source: str, prefix: str = "") -> None:
        self.named = {k.removeprefix(prefix): v for k, v in tensors.items()}
        self.source = source
        # errors name a tensor as the file stores it: the prefix, when the file uses it
        self._stored = {k.removeprefix(prefix): k for k in tensors}
        self._prefix = prefix if any(k.startswith(prefix) for k in tensors) else ""
        self._taken: set[str] = set()

    def check_layers(self, stem: str, n_layer: int, field: str) -> None:
        """Refuse tensors of layers past ``n_layer`` (``stem`` "h." or "layers."): the
        config would silently run fewer layers than the checkpoint holds."""
        found = [
            int(m.group(1)) for k in self.named if (m := re.match(rf"{re.escape(stem)}(\d+)\.", k))
        ]
        if found and max(found) >= n_layer:
            raise MaskvizError(
                f"{self.source}: holds layer {max(found)} but config.json's {field} is {n_layer}"
            )

    def __contains__(self, key: str) -> bool:
        return key in self.named

    def take(self, key: str, shape: tuple[int, ...]) -> NDArray[Any]:
        name = self._stored.get(key, self._prefix + key)
        if key not in self.named:
            raise MaskvizError(f"{self.source}: missing tensor {name!r}")
        arr = self.named[key]
        if arr.dtype.kind != "f":
            raise MaskvizError(
                f"{self.source}: tensor {name!r} has dtype {arr.dtype}, expected floating point"
            )
        if arr.shape != shape:
            raise MaskvizError(
                f"{self.source}: tensor {name!r} has shape {list(arr.shape)}, expected {list(shape)}"
            )
        if not np.isfinite(arr).all():
            raise MaskvizError(f"{self.source}: tensor {name!r} contains NaN or infinity")
        self._taken.add(key)
        return arr

    def warn_unused(self) -> None:
        """Warn, naming them, of tensors the model did not take: weights the config's
        model has no place for (a Qwen3 file read as a Llama loses its q/k norms), which
        transformers warns of too. Saved buffers (GPT-2's causal mask, RoPE's
        frequencies) are not weights and pass."""
        unused = [
            self._stored[k]
            for k in self.named
            if k not in self._taken and tuple(k.split(".")[-2:]) not in _BUFFERS
        ]
        if unused:
            shown = ", ".join(repr(k) for k in unused[:3]) + (", …" if len(unused) > 3 else "")
            warnings.warn(
                f"{self.source}: {plural(len(unused), 'tensor')} the model does not use "
                f"({shown}): the checkpoint may be of another model type",
                UserWarning,
                stacklevel=4,
            )


_BUFFERS = {("attn", "bias"), ("attn", "masked_bias"), ("rotary_emb", "inv_freq")}


def output_head(t: Tensors, embedding: NDArray[Any], tied: bool) -> NDArray[Any] | None:
    """The checkpoint's ``lm_head.weight``, or None when the output head is the token
    embedding: tied and not stored, or stored equal to it. A stored head that differs
    is used even when the config says tied, as transformers does ("we will NOT tie
    them"); untied without one is an error naming the tensor."""
    if "lm_head.weight" not in t:
        if not tied:
            raise MaskvizError(
                f"{t.source}: missing tensor 'lm_head.weight', required because "
                "tie_word_embeddings is false"
            )
        return None
    head = t.take("lm_head.weight", embedding.shape)
    return None if np.array_equal(head, embedding) else head
