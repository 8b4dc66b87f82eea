"""Loading models: the shipped models, checkpoint folders, hub ids.

A checkpoint folder holds ``config.json`` (Hugging Face fields of any architecture
`maskviz.arch.family` knows: GPT-2, Llama, Mistral, Qwen2, Qwen3),
``model.safetensors`` or the shards a ``model.safetensors.index.json`` lists (read
with the ``safetensors`` package, never pickle; float32, float16 and bfloat16
weights) and ``tokenizer.json`` (read with ``tokenizers``), or, for the shipped
models, ``"tokenizer": "bytes"`` in its config.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from maskviz._text import quoted
from maskviz.arch import Config, family, supported_model_types
from maskviz.arch._config import as_json
from maskviz.errors import MaskvizError, first_line, usage_error
from maskviz.model import GPT, DType, dtype_name
from maskviz.tokenizer import HF_EXTRA, ByteTokenizer, HFTokenizer, Tokenizer

DEFAULT_MODEL = "tiny"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_MAX_CONFIG_BYTES = 1 << 20

# safetensors dtype codes that safe_open hands over as NumPy arrays; "BF16" is widened here.
_NUMPY_CODES = frozenset(
    ("F64", "F32", "F16", "I64", "U64", "I32", "U32", "I16", "U16", "I8", "U8", "BOOL")
)


def shipped_models() -> list[str]:
    """Names of the models shipped in the package: the folders under maskviz/models/.

    >>> "tiny" in shipped_models()
    True
    """
    root = resources.files("maskviz") / "models"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "config.json").is_file())


def shipped_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """Where a shipped model (the default one unless named) lives inside the package."""
    return Path(str(resources.files("maskviz") / "models" / name))


def load_model(spec: str | os.PathLike[str] | None = None, *, dtype: DType = "float32") -> GPT:
    """Load a model: None or a shipped name such as "tiny" (any case), a checkpoint
    folder, or a hub id. Shipped names are matched first.

    >>> model = load_model()
    >>> model.name, model.config.n_ctx
    ('tiny', 256)
    >>> model.tokenizer.decode(model.tokenizer.encode("To be"))
    'To be'
    >>> load_model("Tiny").name
    'tiny'
    """
    dtype = dtype_name(dtype)
    if spec is not None and not isinstance(spec, str | os.PathLike):
        raise usage_error(f"model must be a name, a folder or a hub id, got {spec!r}")
    text = DEFAULT_MODEL if spec is None else str(spec)
    if not text.strip():  # "" is not the current folder
        raise usage_error(f"model must be a name, a folder or a hub id, got {quoted(text)}")
    shipped = {name.lower(): name for name in shipped_models()}
    name = shipped.get(text.lower())
    if name is not None:
        return load_checkpoint(shipped_model_dir(name), dtype=dtype, name=name)
    path = Path(text).expanduser()
    try:
        exists = path.exists()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise usage_error(f"model {quoted(text)}: {exc.strerror or exc}") from None
    if exists:
        if not path.is_dir():
            raise usage_error(f"model {quoted(text)} is a file; give the checkpoint's folder")
        return load_checkpoint(path, dtype=dtype)
    if _HUB_ID.match(text) and not text.startswith((".", "/")):
        try:
            folder = _from_hub(text)
        except MaskvizError as exc:
            # a bare name the hub could not give may be meant as a shipped model
            if "/" in text:
                raise
            close = difflib.get_close_matches(text.lower(), list(shipped), n=1)
            hint = (
                f"or did you mean the shipped model {close[0]!r}?"
                if close
                else f"the shipped models are {', '.join(shipped.values())}"
            )
            raise MaskvizError(f"{exc}; {hint}", usage=exc.exit_code == 2) from None
        return load_checkpoint(folder, dtype=dtype, name=text)
    raise usage_error(
        f"no model {quoted(text)}: not a shipped model ({', '.join(shipped.values())}), "
        "not an existing folder, not a hub id"
    )


def _from_hub(repo_id: str) -> Path:
    """Resolve a hub id to a local folder: the cache first, then the network."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise MaskvizError(
            f"loading {quoted(repo_id)} from the hub needs the 'hf' extra: {HF_EXTRA}"
        ) from None
    patterns = [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "model-*.safetensors",
    ]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise MaskvizError(
            f"model {quoted(repo_id)} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            f"download it once with network access (maskviz trace 'hi' --model {repo_id}) "
            "or pass a local checkpoint folder"
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:
        raise MaskvizError(
            f"model {quoted(repo_id)} is not in the local Hugging Face cache and could not be downloaded "
            f"({type(exc).__name__}); connect to the network once, or pass a local checkpoint folder"
        ) from None


def _not_a_file(path: Path, why: str = "") -> MaskvizError:
    """Why ``path``, which a checkpoint needs, cannot be read as a file."""
    what = "a folder, not a file" if path.is_dir() else "not a regular file"
    return MaskvizError(f"{path}: {what if path.exists() else 'missing'}{why}")


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise _not_a_file(path, " (a checkpoint folder needs config.json)")
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise MaskvizError(f"{path}: too large to be a model config")
    data = _read_json(path)
    if not isinstance(data, dict):
        raise MaskvizError(f"{path}: expected a JSON object")
    return data


def _read_json(path: Path) -> Any:
    """A JSON file's value; an unreadable or malformed file is one error naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MaskvizError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, nesting, 5000 digits
        raise MaskvizError(f"{path}: not valid JSON ({first_line(exc)})") from None


# The model class a config's ``architectures`` names -> its model_type, for a config.json
# that lacks model_type (transformers' save_pretrained writes both).
_ARCHITECTURES = {
    "GPT2LMHeadModel": "gpt2",
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "MinistralForCausalLM": "ministral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
}


def config_from_dict(data: dict[str, Any], source: str = "config.json") -> Config:
    """The config of any supported architecture, chosen by ``model_type`` (absent: by the
    model class ``architectures`` names), refusing what the engine does not implement by
    name.

    >>> config_from_dict({"model_type": "gpt2", "n_layer": 1, "n_head": 1, "n_embd": 8,
    ...                   "n_positions": 4, "vocab_size": 5}).architecture
    'gpt2'
    >>> config_from_dict({"architectures": ["BertModel"]})
    Traceback (most recent call last):
    ...
    maskviz.errors.MaskvizError: config.json: missing field 'model_type' (and architectures = ["BertModel"] names no model class this engine implements)
    """
    if data.get("model_type") is None:
        data = {**data, "model_type": _model_type_of_architectures(data, source)}
    model_type = data["model_type"]
    module = family(model_type) if isinstance(model_type, str) else None
    if module is None:
        raise MaskvizError(
            f"{source}: model_type = {as_json(model_type)} is not supported (this engine "
            f"implements {', '.join(supported_model_types())})"
        )
    try:
        config: Config = module.config_from_hf(data, source)
    except (TypeError, ValueError, OverflowError) as exc:  # e.g. a 400-digit float, a list
        raise MaskvizError(f"{source}: a value of an unusable type or size ({exc})") from None
    return config


def _model_type_of_architectures(data: dict[str, Any], source: str) -> str:
    """The model type of the first class ``architectures`` lists that this engine knows;
    without one, a missing model_type is refused by name (read as GPT-2, a Llama config
    would fail on a GPT-2 field it never had)."""
    classes = data.get("architectures")
    named = classes if isinstance(classes, list) else []
    known = [_ARCHITECTURES[c] for c in named if isinstance(c, str) and c in _ARCHITECTURES]
    if known:
        return known[0]
    missing = f"{source}: missing field 'model_type'"
    if classes is None:
        raise MaskvizError(missing)
    why = f"architectures = {as_json(classes)} names no model class this engine implements"
    raise MaskvizError(f"{missing} (and {why})")


def bfloat16_to_float32(raw: bytes | bytearray | memoryview) -> NDArray[np.float32]:
    """The exact float32 values of little-endian bfloat16 bytes, as a flat array.

    A bfloat16 is the top 16 bits of a float32, so shifting its bits left by 16
    widens it with no rounding.

    >>> bfloat16_to_float32(bytes([0x80, 0x3F, 0xC0, 0x40, 0x80, 0xBF])).tolist()
    [1.0, 6.0, -1.0]
    """
    bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32)
    bits <<= 16
    return bits.view(np.float32)


def read_safetensors(path: Path) -> dict[str, NDArray[Any]]:
    """Every tensor of a safetensors file by name, read with the ``safetensors`` package.

    float64, float32 and float16 tensors come back as stored, bfloat16 ones widened
    exactly to float32, other NumPy dtypes (integers, bool) as stored. A missing,
    truncated or inconsistent file, or a dtype NumPy cannot hold (float8, ...),
    raises `MaskvizError` naming the file.
    """
    from safetensors import SafetensorError, deserialize, safe_open

    if not path.is_file():
        raise _not_a_file(path)
    try:
        path.open("rb").close()  # safetensors reports an unreadable file as a missing one
    except OSError as exc:
        raise MaskvizError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        with safe_open(str(path), framework="numpy") as f:  # checks the header and sizes
            names = f.keys()  # a method call: safe_open is not iterable
            codes = {name: f.get_slice(name).get_dtype() for name in names}
            for name, code in codes.items():
                if code not in _NUMPY_CODES and code != "BF16":
                    raise MaskvizError(
                        f"{path}: tensor {name!r} has dtype {code}, which maskviz cannot read "
                        "(it reads float32, float16, bfloat16 and float64 weights)"
                    )
            tensors = {name: f.get_tensor(name) for name, code in codes.items() if code != "BF16"}
        if "BF16" in codes.values():
            # NumPy has no bfloat16, so safe_open cannot return these as arrays; the
            # library's deserialize hands over their raw bytes (header and sizes checked)
            # and only the bit-widening is done here. (Its type stub is untyped.)
            raw = deserialize(path.read_bytes())  # type: ignore[no-untyped-call]
            for name, info in raw:
                if info["dtype"] == "BF16":
                    tensors[name] = bfloat16_to_float32(info["data"]).reshape(info["shape"])
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise MaskvizError(f"{path}: not a readable safetensors file ({first_line(exc)})") from None
    return tensors


def load_checkpoint(folder: Path, *, dtype: DType = "float32", name: str | None = None) -> GPT:
    """Load a checkpoint folder (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise usage_error(f"{folder}: no such checkpoint folder")
    data = _read_config(folder)
    config = config_from_dict(data, str(folder / "config.json"))
    shown = data.get("name", folder.name)  # maskviz's own field: the name a trace shows
    if not isinstance(shown, str):
        raise MaskvizError(f"{folder / 'config.json'}: name must be text, got {as_json(shown)}")
    tokenizer: Tokenizer
    if data.get("tokenizer") == "bytes":
        tokenizer = ByteTokenizer()
    else:
        tok_path = folder / "tokenizer.json"
        if not tok_path.is_file():
            raise _not_a_file(tok_path, " (a checkpoint folder needs tokenizer.json)")
        tokenizer = HFTokenizer(tok_path, _eos_ids(folder, data))
    if tokenizer.vocab_size > config.vocab_size:
        raise MaskvizError(
            f"{folder}: the tokenizer's ids reach {tokenizer.vocab_size - 1} but the model's "
            f"vocabulary has {config.vocab_size} tokens"
        )
    tensors, source = _read_weights(folder)
    _check_range(tensors, source, dtype)
    module = family(config.architecture)
    assert module is not None  # config_from_dict chose it
    weights = module.weights_from_tensors(tensors, config, source)
    return GPT(weights, tokenizer, name=name or shown, dtype=dtype)


def _check_range(tensors: dict[str, NDArray[Any]], source: str, dtype: str) -> None:
    """Refuse, naming it, a float64 tensor holding a value beyond ``dtype``'s range (it
    would be an infinity); later, the cast could no longer say which tensor."""
    top = float(np.finfo(dtype).max)
    for name, a in tensors.items():
        if a.dtype.itemsize > np.dtype(dtype).itemsize and a.dtype.kind == "f" and a.size:
            high, low = float(a.max()), float(a.min())
            value = high if high >= -low else low  # the one farthest from 0
            if top < abs(value) < math.inf:  # NaN and inf pass here: the architecture names them
                raise MaskvizError(
                    f"{source}: tensor {name!r} holds {value:.3g}, beyond {dtype}'s range "
                    f"(±{top:.3g}): load the model in float64 (--dtype float64)"
                )


def _eos_ids(folder: Path, data: dict[str, Any]) -> tuple[int, ...]:
    """The end-of-sequence tokens, an id or a list of ids (any of them stops
    generation): generation_config.json's when it names them, as transformers'
    `generate` reads them (Qwen2.5-Instruct lists two there), else config.json's."""
    settings_path = folder / "generation_config.json"
    settings = _generation_settings(settings_path)
    if settings.get("eos_token_id") is not None:
        ids = _token_ids(settings["eos_token_id"])
        if ids is not None:
            return ids
        _ignored(
            f"{settings_path}: eos_token_id {_NOT_IDS}, got {as_json(settings['eos_token_id'])}"
        )
    eos = data.get("eos_token_id")
    ids = _token_ids(eos)
    if ids is None:
        raise MaskvizError(f"{folder / 'config.json'}: eos_token_id {_NOT_IDS}, got {as_json(eos)}")
    return ids


_NOT_IDS = "must be a token id (an integer >= 0), a list of them, or null"


def _token_ids(value: Any) -> tuple[int, ...] | None:
    """An id, a list of ids or null as a tuple of ids; None for anything else."""
    ids = [] if value is None else value if isinstance(value, list) else [value]
    if all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        return tuple(ids)
    return None


def _generation_settings(path: Path) -> dict[str, Any]:
    """generation_config.json's settings ({} without one). It decides only where
    generation stops, so a file that cannot be used is a warning naming it and why,
    and the model loads with config.json's ids, as transformers loads it."""
    if not path.is_file():
        return {}
    try:
        settings = _read_json(path)
    except MaskvizError as exc:
        problem = str(exc)
    else:
        if isinstance(settings, dict):
            return settings
        problem = f"{path}: expected a JSON object"
    _ignored(problem)
    return {}


def _ignored(problem: str) -> None:
    """Warn that generation_config.json cannot say where generation stops."""
    warnings.warn(
        f"{problem}; generation stops at config.json's eos_token_id instead",
        UserWarning,
        stacklevel=3,
    )


def _read_weights(folder: Path) -> tuple[dict[str, NDArray[Any]], str]:
    """Every tensor of ``model.safetensors``, or of the shards that
    ``model.safetensors.index.json`` lists; and the name errors should cite."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file() or not index.is_file():
        if not single.is_file():
            raise _not_a_file(
                single,
                " (a checkpoint folder needs model.safetensors or model.safetensors.index.json)",
            )
        return read_safetensors(single), str(single)
    data = _read_json(index)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        raise MaskvizError(f"{index}: not a safetensors index (no weight_map)")
    for shard in weight_map.values():
        # a shard is a file beside the index, nothing else
        if not isinstance(shard, str) or not shard or Path(shard).name != shard:
            raise MaskvizError(f"{index}: shard {as_json(shard)} is not a file name")
    shards = {shard: read_safetensors(folder / shard) for shard in sorted(set(weight_map.values()))}
    # each tensor from the shard the index names: a stray copy elsewhere is never read
    tensors: dict[str, NDArray[Any]] = {}
    for name, shard in weight_map.items():
        if name not in shards[shard]:
            raise MaskvizError(f"{index}: tensor {name!r} is not in {shard}, where it is listed")
        tensors[name] = shards[shard][name]
    return tensors, str(index)
