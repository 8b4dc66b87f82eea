"""maskviz: see and check how masked self-attention works in a GPT.

>>> import maskviz
>>> maskviz.masks.causal(3).to_array().sum()
np.int64(6)
"""

from __future__ import annotations

from maskviz import masks
from maskviz.errors import MaskvizError

__version__ = "0.1.0"

__all__ = ["MaskvizError", "__version__", "masks"]
