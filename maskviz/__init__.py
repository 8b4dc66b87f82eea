"""maskviz: see and check how masked self-attention works in a GPT.

>>> import maskviz
>>> mask = maskviz.masks.causal(3)
>>> mask.to_array().sum()
np.int64(6)
>>> model = maskviz.load_model()              # the shipped byte-level model
>>> trace = model.trace(model.tokenizer.encode("To be"), steps=3)
>>> trace.attention.shape                      # [n_layer, n_head, T, T]
(4, 4, 8, 8)

``maskviz.compare``, ``maskviz.similarity`` and ``maskviz.trace`` are modules, each
holding the function or class it is named for:

>>> maskviz.compare.compare(model, "training-vs-cached", [84, 111], 2).agree
True
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from maskviz import compare, masks, similarity, trace, view
    from maskviz.arch.llama import LlamaConfig
    from maskviz.errors import MaskvizError
    from maskviz.loading import load_model
    from maskviz.masks import Mask
    from maskviz.model import GPT, GPTConfig, KVCache, random_model
    from maskviz.trace import Trace

__version__ = "0.3.0"

# Everything is imported on first use: commands that only draw masks (``maskviz
# show-mask``) start without the engine, and the command line's entry point
# (`maskviz.__main__.main`) runs before NumPy is loaded.
_MODULES = ("compare", "masks", "similarity", "trace", "view")  # `maskviz.masks` etc.
_LAZY = {
    **{name: f"maskviz.{name}" for name in _MODULES},
    "Mask": "maskviz.masks",
    "MaskvizError": "maskviz.errors",
    "GPT": "maskviz.model",
    "GPTConfig": "maskviz.model",
    "KVCache": "maskviz.model",
    "LlamaConfig": "maskviz.arch.llama",
    "random_model": "maskviz.model",
    "load_model": "maskviz.loading",
    "Trace": "maskviz.trace",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'maskviz' has no attribute {name!r}")
    value = import_module(module)
    if name not in _MODULES:
        value = getattr(value, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "GPT",
    "GPTConfig",
    "KVCache",
    "LlamaConfig",
    "Mask",
    "MaskvizError",
    "Trace",
    "__version__",
    "compare",
    "load_model",
    "masks",
    "random_model",
    "similarity",
    "trace",
    "view",
]
