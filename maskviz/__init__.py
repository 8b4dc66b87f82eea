"""maskviz: see and check how masked self-attention works in a GPT.

>>> import maskviz
>>> mask = maskviz.masks.causal(3)
>>> mask.to_array().sum()
np.int64(6)
>>> model = maskviz.random_model(maskviz.GPTConfig(4, 4, 32, 64, 257))
>>> trace = model.trace(model.tokenizer.encode("To be"), steps=3)
>>> trace.attention.shape                      # [n_layer, n_head, T, T]
(4, 4, 8, 8)
"""

from __future__ import annotations

from maskviz import masks
from maskviz.errors import MaskvizError
from maskviz.loading import load_model
from maskviz.masks import Mask
from maskviz.model import GPT, GPTConfig, KVCache, random_model
from maskviz.trace import Trace

__version__ = "0.1.0"

__all__ = [
    "GPT",
    "GPTConfig",
    "KVCache",
    "Mask",
    "MaskvizError",
    "Trace",
    "__version__",
    "load_model",
    "masks",
    "random_model",
]
