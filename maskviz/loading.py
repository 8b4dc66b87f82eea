"""Loading models: the shipped "tiny" model, GPT-2 checkpoint folders, hub ids.

A checkpoint folder holds ``config.json`` (Hugging Face GPT-2 fields),
``model.safetensors`` (read with the ``safetensors`` package's NumPy API, never
pickle) and ``tokenizer.json`` (read with ``tokenizers``), or, for the shipped
model, ``"tokenizer": "bytes"`` in its config.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from maskviz.errors import MaskvizError, usage_error
from maskviz.model import DTYPES, GPT, Block, DType, GPTConfig, Weights
from maskviz.tokenizer import ByteTokenizer, HFTokenizer, Tokenizer

DEFAULT_MODEL = "tiny"
HF_EXTRA = "pip install 'maskviz[hf]'"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_MAX_CONFIG_BYTES = 1 << 20

# Settings whose other values this engine does not implement: refused, never run wrong.
_REQUIRED: dict[str, tuple[Any, ...]] = {
    "model_type": ("gpt2",),
    "activation_function": ("gelu_new", "gelu_pytorch_tanh"),
    "add_cross_attention": (False, None),
    "scale_attn_by_inverse_layer_idx": (False, None),
    "reorder_and_upcast_attn": (False, None),
    "scale_attn_weights": (True, None),
    "n_inner": (None,),
}


def shipped_model_dir() -> Path:
    """Where the shipped default model lives inside the installed package."""
    return Path(str(resources.files("maskviz") / "models" / DEFAULT_MODEL))


def load_model(spec: str | Path | None = None, *, dtype: DType = "float32") -> GPT:
    """Load a model: None or "tiny" (shipped), a checkpoint folder, or a hub id.

    >>> model = load_model()
    >>> model.name, model.config.n_ctx
    ('tiny', 256)
    >>> model.tokenizer.decode(model.tokenizer.encode("To be"))
    'To be'
    """
    if dtype not in DTYPES:
        raise usage_error(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if spec is None or str(spec) == DEFAULT_MODEL:
        return load_checkpoint(shipped_model_dir(), dtype=dtype, name=DEFAULT_MODEL)
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise usage_error(f"--model {str(spec)!r} is a file; give the checkpoint's folder")
        return load_checkpoint(path, dtype=dtype)
    text = str(spec)
    if _HUB_ID.match(text) and not text.startswith((".", "/")):
        return load_checkpoint(_from_hub(text), dtype=dtype, name=text)
    raise usage_error(f"no model {text!r}: not 'tiny', not an existing folder, not a hub id")


def _from_hub(repo_id: str) -> Path:
    """Resolve a hub id to a local folder: the cache first, then the network."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise MaskvizError(
            f"loading {repo_id!r} from the hub needs the 'hf' extra: {HF_EXTRA}"
        ) from None
    patterns = ["config.json", "model.safetensors", "tokenizer.json"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise MaskvizError(
            f"model {repo_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            f"download it once with network access (maskviz trace 'hi' --model {repo_id}) "
            "or pass a local checkpoint folder"
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:
        raise MaskvizError(
            f"model {repo_id!r} is not in the local Hugging Face cache and could not be downloaded "
            f"({type(exc).__name__}); connect to the network once, or pass a local checkpoint folder"
        ) from None


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise MaskvizError(f"{path}: missing (a checkpoint folder needs config.json)")
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise MaskvizError(f"{path}: too large to be a model config")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MaskvizError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MaskvizError(f"{path}: expected a JSON object")
    return data


def config_from_dict(data: dict[str, Any], source: str = "config.json") -> GPTConfig:
    """A `GPTConfig` from Hugging Face GPT-2 config fields, refusing what the engine lacks."""
    for key, allowed in _REQUIRED.items():
        if data.get(key, allowed[-1]) not in allowed:
            raise MaskvizError(
                f"{source}: {key} = {data.get(key)!r} is not supported "
                f"(this engine implements {' or '.join(repr(a) for a in allowed if a is not None)})"
            )
    try:
        eps = float(data.get("layer_norm_epsilon", 1e-5))
        fields = {
            "n_layer": data["n_layer"],
            "n_head": data["n_head"],
            "n_embd": data["n_embd"],
            "n_ctx": data.get("n_positions", data.get("n_ctx")),
            "vocab_size": data["vocab_size"],
        }
    except KeyError as exc:
        raise MaskvizError(f"{source}: missing field {exc}") from None
    except (TypeError, ValueError):
        raise MaskvizError(f"{source}: layer_norm_epsilon must be a number") from None
    for key, value in fields.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 20:
            raise MaskvizError(
                f"{source}: {key} must be an integer from 1 to {1 << 20}, got {value!r}"
            )
    try:
        return GPTConfig(layer_norm_epsilon=eps, **fields)
    except MaskvizError as exc:
        raise MaskvizError(f"{source}: {exc}") from None


def _read_tensors(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    if not path.is_file():
        raise MaskvizError(f"{path}: missing (a checkpoint folder needs model.safetensors)")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors: dict[str, np.ndarray[Any, Any]] = load_file(str(path))
        return tensors
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MaskvizError(f"{path}: not a readable safetensors file ({first})") from None


def load_checkpoint(folder: Path, *, dtype: DType = "float32", name: str | None = None) -> GPT:
    """Load a GPT-2 checkpoint folder (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise usage_error(f"{folder}: no such checkpoint folder")
    data = _read_config(folder)
    config = config_from_dict(data, str(folder / "config.json"))
    tokenizer: Tokenizer
    if data.get("tokenizer") == "bytes":
        tokenizer = ByteTokenizer()
    else:
        tok_path = folder / "tokenizer.json"
        if not tok_path.is_file():
            raise MaskvizError(f"{tok_path}: missing (a checkpoint folder needs tokenizer.json)")
        tokenizer = HFTokenizer(tok_path)
    if tokenizer.vocab_size > config.vocab_size:
        raise MaskvizError(
            f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
            f"{config.vocab_size}"
        )
    weights = _weights(
        _read_tensors(folder / "model.safetensors"), config, folder / "model.safetensors"
    )
    return GPT(
        config, weights, tokenizer, name=name or str(data.get("name", folder.name)), dtype=dtype
    )


def _weights(tensors: dict[str, np.ndarray[Any, Any]], cfg: GPTConfig, path: Path) -> Weights:
    """Arrange checkpoint tensors (with or without the ``transformer.`` prefix)."""
    named = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    c, v = cfg.n_embd, cfg.vocab_size

    def take(key: str, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
        if key not in named:
            raise MaskvizError(f"{path}: missing tensor {key!r}")
        arr = named[key]
        if arr.dtype.kind != "f":
            raise MaskvizError(
                f"{path}: tensor {key!r} has dtype {arr.dtype}, expected floating point"
            )
        if arr.shape != shape:
            raise MaskvizError(
                f"{path}: tensor {key!r} has shape {list(arr.shape)}, expected {list(shape)}"
            )
        if not np.isfinite(arr).all():
            raise MaskvizError(f"{path}: tensor {key!r} contains NaN or infinity")
        return arr

    blocks = []
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        blocks.append(
            Block(
                take(p + "ln_1.weight", (c,)),
                take(p + "ln_1.bias", (c,)),
                take(p + "attn.c_attn.weight", (c, 3 * c)),
                take(p + "attn.c_attn.bias", (3 * c,)),
                take(p + "attn.c_proj.weight", (c, c)),
                take(p + "attn.c_proj.bias", (c,)),
                take(p + "ln_2.weight", (c,)),
                take(p + "ln_2.bias", (c,)),
                take(p + "mlp.c_fc.weight", (c, 4 * c)),
                take(p + "mlp.c_fc.bias", (4 * c,)),
                take(p + "mlp.c_proj.weight", (4 * c, c)),
                take(p + "mlp.c_proj.bias", (c,)),
            )
        )
    wte = take("wte.weight", (v, c))
    lm_head = take("lm_head.weight", (v, c)) if "lm_head.weight" in named else None
    if lm_head is not None and np.array_equal(lm_head, wte):
        lm_head = None  # tied, stored twice
    return Weights(
        wte=wte,
        wpe=take("wpe.weight", (cfg.n_ctx, c)),
        blocks=blocks,
        ln_f_w=take("ln_f.weight", (c,)),
        ln_f_b=take("ln_f.bias", (c,)),
        lm_head=lm_head,
    )
