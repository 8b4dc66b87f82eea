"""Reading Hugging Face ``config.json`` fields: shared checks with one-line errors."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from numbers import Real
from typing import Any

import numpy as np

from maskviz.errors import MaskvizError, as_integer, usage_error

MAX_SIZE = 1 << 20  # the largest dimension a config may name


def as_json(value: Any, limit: int = 60) -> str:
    """A config value as config.json spells it (false, null, "gpt2"), cut to ``limit``
    characters with "…" (an integer of 400 digits, a long list).

    >>> as_json(None), as_json(10**400)[-2:]
    ('null', '0…')
    """
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unsupported(
    source: str, key: str, value: Any, why: str, *, usage: bool = False
) -> MaskvizError:
    return MaskvizError(f"{source}: {key} = {as_json(value)} is not supported ({why})", usage=usage)


def check_causal(data: Mapping[str, Any], source: str, family: str) -> None:
    """Refuse ``is_causal: false``: transformers then attends both ways, this engine never."""
    if data.get("is_causal") not in (True, None):
        raise unsupported(
            source, "is_causal", data["is_causal"], f"maskviz runs {family} causally", usage=True
        )


def check_allowed(
    data: Mapping[str, Any], allowed: Mapping[str, tuple[Any, ...]], source: str
) -> None:
    """Refuse a field whose value the engine does not implement (None: may be absent or null)."""
    for key, values in allowed.items():
        if key in data and not any(_same(data[key], a) for a in values):
            shown = [as_json(a) for a in values if a is not None]
            # every entry lists a value; the fallback keeps the message from ending in "()"
            why = "this engine implements " + (" or ".join(shown) or "only the default")
            raise unsupported(source, key, data[key], why)


def _same(value: Any, allowed: Any) -> bool:
    """``value == allowed``, except that true is not 1 nor false 0: ``"num_experts": false``
    is not the number of experts transformers reads."""
    return bool(value == allowed) and isinstance(value, bool) == isinstance(allowed, bool)


def integers(
    data: Mapping[str, Any], source: str, **fields: str | tuple[str, ...]
) -> dict[str, int]:
    """Positive integer fields by our name, read from the first config key present."""
    out: dict[str, int] = {}
    for name, keys in fields.items():
        names = (keys,) if isinstance(keys, str) else keys
        key = next((k for k in names if data.get(k) is not None), names[0])
        if key not in data:
            raise MaskvizError(f"{source}: missing field {key!r}")
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE:
            raise MaskvizError(
                f"{source}: {key} must be an integer from 1 to {MAX_SIZE}, got {as_json(value)}"
            )
        out[name] = value
    return out


def flag(data: Mapping[str, Any], key: str, default: bool, source: str) -> bool:
    """A true/false field (absent or null: ``default``); "false" as a string is refused,
    not read as true."""
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise MaskvizError(f"{source}: {key} must be true or false, got {as_json(value)}")
    return value


def _finite_positive(value: object) -> bool:
    """A real number in (0, inf) as a float: not a bool (true would be 1.0), not a string."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return False
    try:
        return 0 < float(value) < math.inf
    except OverflowError:  # an integer of 400 digits
        return False


def positive_number(data: Mapping[str, Any], key: str, default: float, source: str) -> float:
    """A number field that must be finite and > 0 (absent: ``default``); a bool, a string
    such as "1e-5" or a null is refused naming it, never read as a number."""
    value = data.get(key, default)
    if not _finite_positive(value):
        raise MaskvizError(f"{source}: {key} must be a finite number > 0, got {as_json(value)}")
    return float(value)


def positive_float(owner: object, name: str) -> None:
    """Store ``owner.name`` (a frozen dataclass field) as a Python float, or refuse it.

    A NumPy float64 scalar kept as it is would promote every float32 array it touches.
    """
    value = getattr(owner, name)
    if not _finite_positive(value):
        raise usage_error(
            f"{type(owner).__name__}.{name} must be a finite number > 0, got {value!r}"
        )
    object.__setattr__(owner, name, float(value))


def boolean(owner: object, name: str) -> None:
    """Refuse ``owner.name`` unless it is True or False (a NumPy bool is stored as one):
    "no" is truthy, and would silently mean yes."""
    value = getattr(owner, name)
    if not isinstance(value, bool | np.bool_):
        raise usage_error(f"{type(owner).__name__}.{name} must be True or False, got {value!r}")
    object.__setattr__(owner, name, bool(value))


def layer_index(config: Any, layer: int) -> int:
    """``layer`` checked against ``config.n_layer`` (negative ones are refused, as
    everywhere layers are named)."""
    index = as_integer(layer, "layer")
    if not 0 <= index < config.n_layer:
        raise usage_error(f"layer {layer} is outside 0..{config.n_layer - 1}")
    return index


def positive_int(owner: object, name: str) -> None:
    """Store ``owner.name`` (a frozen dataclass field) as a Python int, or refuse it.

    A NumPy integer is accepted and stored as the int it holds, so that configs built
    from arrays compare, hash and print as those written by hand.
    """
    value = getattr(owner, name)
    try:
        number = as_integer(value, name)
    except MaskvizError:
        number = 0  # a float, bool or string: refused below with the field's name
    if not 1 <= number <= MAX_SIZE:
        raise usage_error(
            f"{type(owner).__name__}.{name} must be an integer from 1 to {MAX_SIZE}, got {value!r}"
        )
    object.__setattr__(owner, name, number)
