#!/usr/bin/env python
"""Build the tiny GPT-2 parity fixture used by maskviz's tests.

DEV-ONLY TOOL.  The test suite never runs this script and never needs torch or
transformers: it only reads the files this script writes and commits.

What it builds (into ``tests/fixtures/gpt2-tiny/`` by default):

* ``tokenizer.json``   -- a small byte-level BPE tokenizer (GPT-2 style:
  ByteLevel pre-tokenizer/decoder, ``add_prefix_space=False``, special token
  ``<|endoftext|>``) trained with the ``tokenizers`` library on a short English
  text embedded below.
* ``config.json`` and ``model.safetensors`` -- a randomly initialised (seeded)
  ``transformers.GPT2LMHeadModel`` with 2 layers, 4 heads, 32-dim embeddings and
  64 positions, saved in float32 with ``save_pretrained(safe_serialization=True)``
  (Hugging Face layout; ``lm_head.weight`` is tied to ``transformer.wte.weight``).
  The weights are made non-trivial on purpose: query/key projections are large
  so attention is peaky rather than near-uniform, every LayerNorm gets random
  gain and bias, and every linear layer gets a small random bias.
* ``reference.npz`` -- reference outputs from Hugging Face transformers (eager
  attention): a prompt, a 12-token greedy continuation (cached decoding, as in
  ``generate``), and the logits and attention probabilities of one forward pass
  over the whole sequence, in float64 and in float32.  Keys:

  ``prompt``              <U..   the prompt string (0-d unicode array)
  ``prompt_ids``          int64  [P]
  ``token_ids``           int64  [T]              prompt + greedy tokens
  ``logits``              f64    [T, V]
  ``attentions``          f64    [n_layer, n_head, T, T]
  ``logits_float32``      f32    [T, V]
  ``attentions_float32``  f32    [n_layer, n_head, T, T]

  It is written with ``np.savez_compressed`` and contains no pickled objects
  (``np.load(path)`` works with the default ``allow_pickle=False``).

How to run (from the repository root)::

    pip install torch==2.13.0 transformers tokenizers   # plus numpy, safetensors
    python scripts/make_gpt2_fixture.py                # [--out DIR] [--seed N]

The script is deterministic (fixed seeds; all weights are drawn from a seeded
NumPy generator).  It refuses to write a fixture whose greedy steps have a
top-1/top-2 logit gap below ``MIN_GAP`` (greedy parity would not be robust in
float32); pick another ``--seed`` if that happens.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys

import numpy as np

DEFAULT_OUT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "tests",
    "fixtures",
    "gpt2-tiny",
)

SEED = 7
VOCAB_SIZE = 320
EOT = "<|endoftext|>"
PROMPT = "The cat sat on the mat. The dog"
N_NEW = 12
MIN_GAP = 1e-3

N_LAYER, N_HEAD, N_EMBD, N_POSITIONS = 2, 4, 32, 64

# Plain English training text for the tokenizer (original text written for this
# fixture; its content does not matter beyond giving BPE something to merge).
CORPUS = """\
The cat sat on the mat by the door. It was a warm afternoon, and the light came
in low through the kitchen window. The dog lay in the hall and watched the cat
with one eye open. Neither of them wanted to move, and nobody asked them to.

In the morning the house was quiet. The kettle ticked as it cooled, and the
clock on the shelf kept its slow count. A small boy came down the stairs, sat
at the table, and ate his bread without a word. Then he went out to the garden
to look at the beans, which had grown taller in the night.

The garden was long and narrow. At the far end there was an old apple tree, a
wooden bench, and a heap of stones that nobody had ever moved. Birds came to
the tree in the spring and left again in the autumn. The boy liked to count
them, but he always lost track after twenty or thirty.

His sister was older and more patient. She kept a notebook in which she wrote
the date, the weather, and the names of the birds she had seen. On rainy days
she read the old pages aloud, and the boy listened and tried to remember which
of the birds he had seen himself and which he had only heard about.

When the rain stopped, the dog went out first. He ran to the end of the garden,
barked once at the stones, and came back with wet paws and a proud face. The
cat did not follow. The cat never followed anyone; she went where she liked, at
the time she liked, and came home when she was hungry.

In the evening the family sat together by the fire. Their mother told a story
about a ship that sailed to the edge of the map and found a town where the
people spoke only in questions. Their father laughed and said that he had
lived in such a town for years. The children did not understand the joke, but
they laughed as well, because the fire was warm and the story was good.

Later the house grew dark. The cat sat on the mat again, the dog slept in the
hall, and the clock on the shelf kept counting. Outside, the wind moved through
the apple tree, and somewhere far away a train went by with a long, low sound.

A model that reads text one token at a time can only look back, never forward.
Each new word is chosen from what came before it, and the attention of each
position is spread over the earlier positions alone. That is the whole idea of
a causal mask: the future is hidden, and the past is all there is to see.
"""


def train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS], trainer=trainer)
    return tok


def unseen_token_ids(tok) -> list[int]:
    """Ids of single-byte tokens whose byte never occurs in the training text."""
    from tokenizers import pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()  # the 256 byte symbols
    seen = set()
    for piece, _ in pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(CORPUS):
        seen.update(piece)
    return sorted(tok.token_to_id(ch) for ch in alphabet if ch not in seen)


def build_model(vocab_size: int, eot_id: int, seed: int, unseen: list[int]):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=N_POSITIONS,
        n_embd=N_EMBD,
        n_layer=N_LAYER,
        n_head=N_HEAD,
        activation_function="gelu_new",
        layer_norm_epsilon=1e-5,
        bos_token_id=eot_id,
        eos_token_id=eot_id,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        attn_implementation="eager",
    )
    config._attn_implementation = "eager"
    model = GPT2LMHeadModel(config).eval()

    # Overwrite every parameter from a seeded NumPy generator, so the weights do
    # not depend on torch's initialisation code, and make them non-trivial.
    rng = np.random.default_rng(seed)
    E = N_EMBD

    def normal(shape, std):
        return rng.standard_normal(shape) * std

    def ln(shape):
        return 1.0 + 0.3 * rng.standard_normal(shape), 0.1 * rng.standard_normal(shape)

    new = {}
    tr = model.transformer
    wte = normal(tr.wte.weight.shape, 0.1)
    # Bytes never seen in training get near-zero embeddings (as in a trained
    # model), which keeps them out of the greedy continuation; with tied output
    # embeddings their logits stay close to 0.  This keeps the generated text
    # valid UTF-8 that decodes token by token.
    wte[unseen] *= 0.05
    new["transformer.wte.weight"] = wte
    new["transformer.wpe.weight"] = normal(tr.wpe.weight.shape, 0.05)
    for i in range(N_LAYER):
        p = f"transformer.h.{i}."
        w = np.concatenate(
            [normal((E, E), 0.3), normal((E, E), 0.3), normal((E, E), 0.1)], axis=1
        )  # Conv1D layout (in, out): columns are [q | k | v]
        new[p + "attn.c_attn.weight"] = w
        new[p + "attn.c_attn.bias"] = normal((3 * E,), 0.05)
        new[p + "attn.c_proj.weight"] = normal((E, E), 0.1)
        new[p + "attn.c_proj.bias"] = normal((E,), 0.05)
        new[p + "mlp.c_fc.weight"] = normal((E, 4 * E), 0.2)
        new[p + "mlp.c_fc.bias"] = normal((4 * E,), 0.05)
        new[p + "mlp.c_proj.weight"] = normal((4 * E, E), 0.05)
        new[p + "mlp.c_proj.bias"] = normal((E,), 0.05)
        new[p + "ln_1.weight"], new[p + "ln_1.bias"] = ln((E,))
        new[p + "ln_2.weight"], new[p + "ln_2.bias"] = ln((E,))
    new["transformer.ln_f.weight"], new["transformer.ln_f.bias"] = ln((E,))

    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(new) - {"lm_head.weight"})
    if missing:
        raise RuntimeError(f"parameters not initialised by this script: {missing}")
    with torch.no_grad():
        for name, value in new.items():
            t = params[name]
            if tuple(t.shape) != value.shape:
                raise RuntimeError(f"{name}: shape {tuple(t.shape)} != {value.shape}")
            t.copy_(torch.from_numpy(value.astype(np.float32)))
    if model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr():
        raise RuntimeError("lm_head is not tied to wte")
    return model


def cache_kwarg(model) -> str:
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def greedy(model, prompt_ids, n_new):
    """Greedy decoding with the KV cache, as generate() does it."""
    import torch

    key = cache_kwarg(model)
    ids = torch.tensor([prompt_ids], dtype=torch.long)
    gaps = []
    out_ids = list(prompt_ids)
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
        for step in range(n_new):
            last = out.logits[0, -1].double()
            top2 = torch.topk(last, 2).values
            gaps.append(float(top2[0] - top2[1]))
            nxt = int(torch.argmax(last))
            out_ids.append(nxt)
            if step == n_new - 1:
                break
            past = getattr(out, "cache", None)
            if past is None:
                past = out.past_key_values
            out = model(
                input_ids=torch.tensor([[nxt]], dtype=torch.long),
                use_cache=True,
                **{key: past},
            )
    return out_ids, gaps


def full_pass(model, token_ids):
    import torch

    with torch.no_grad():
        out = model(
            input_ids=torch.tensor([token_ids], dtype=torch.long),
            output_attentions=True,
            use_cache=False,
        )
    if out.attentions is None or len(out.attentions) != N_LAYER:
        raise RuntimeError("model did not return attentions (is attention eager?)")
    logits = out.logits[0].numpy()
    attn = np.stack([a[0].numpy() for a in out.attentions])
    return logits, attn


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)

    import copy

    import torch

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    tok = train_tokenizer(VOCAB_SIZE)
    vocab = tok.get_vocab_size()
    eot_id = tok.token_to_id(EOT)
    prompt_ids = tok.encode(PROMPT).ids
    if len(prompt_ids) < 6:
        raise RuntimeError(f"prompt too short: {len(prompt_ids)} tokens")
    if tok.decode(prompt_ids) != PROMPT:
        raise RuntimeError("tokenizer does not round-trip the prompt")
    if len(prompt_ids) + N_NEW > N_POSITIONS:
        raise RuntimeError("sequence longer than n_positions")

    model32 = build_model(vocab, eot_id, args.seed, unseen_token_ids(tok))
    assert model32.config._attn_implementation == "eager"
    model64 = copy.deepcopy(model32).double().eval()

    token_ids, gaps = greedy(model64, prompt_ids, N_NEW)
    logits64, attn64 = full_pass(model64, token_ids)
    logits32, attn32 = full_pass(model32, token_ids)
    token_ids32, _ = greedy(model32, prompt_ids, N_NEW)

    P, T = len(prompt_ids), len(token_ids)
    # Consistency checks.
    gen_from_full = logits64[P - 1 : T - 1].argmax(-1).tolist()
    if gen_from_full != token_ids[P:]:
        raise RuntimeError("cached greedy tokens differ from full-pass argmax")
    if token_ids32 != token_ids:
        raise RuntimeError("float32 greedy differs from float64 greedy")
    if logits32[P - 1 : T - 1].argmax(-1).tolist() != token_ids[P:]:
        raise RuntimeError("float32 full-pass argmax differs from greedy tokens")
    eos_at = [i for i in range(P, T) if token_ids[i] == eot_id]
    if eos_at:
        raise RuntimeError(
            f"greedy continuation emits <|endoftext|> at {eos_at}; pick another seed"
        )
    for i in token_ids[P:]:
        piece = tok.decode([i])
        if "\ufffd" in piece or not piece.isprintable():
            raise RuntimeError(
                f"greedy token {i} does not decode to printable text; pick another seed"
            )
    min_gap = min(gaps)
    if min_gap < MIN_GAP:
        raise RuntimeError(f"min top-1/top-2 gap {min_gap:.3g} < {MIN_GAP}; pick another seed")

    os.makedirs(args.out, exist_ok=True)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    model32.save_pretrained(args.out, safe_serialization=True)
    gen_cfg = os.path.join(args.out, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)

    prompt_arr = np.array(PROMPT)
    assert prompt_arr.dtype.kind == "U"
    np.savez_compressed(
        os.path.join(args.out, "reference.npz"),
        prompt=prompt_arr,
        prompt_ids=np.asarray(prompt_ids, dtype=np.int64),
        token_ids=np.asarray(token_ids, dtype=np.int64),
        logits=logits64.astype(np.float64),
        attentions=attn64.astype(np.float64),
        logits_float32=logits32.astype(np.float32),
        attentions_float32=attn32.astype(np.float32),
    )

    for name in ("config.json", "model.safetensors", "tokenizer.json", "reference.npz"):
        os.chmod(os.path.join(args.out, name), 0o644)

    # Summary.
    from safetensors.numpy import load_file

    keys = sorted(load_file(os.path.join(args.out, "model.safetensors")))
    causal = np.tril(np.ones((T, T), dtype=bool))
    ent = -(np.where(causal, attn64 * np.log(np.where(causal, attn64, 1.0)), 0.0)).sum(-1)
    uni = np.log(np.arange(1, T + 1))
    print(f"vocab size {vocab}, <|endoftext|> id {eot_id}")
    print(f"prompt {PROMPT!r}: P={P} tokens {prompt_ids}")
    print(f"greedy continuation {token_ids[P:]} -> {tok.decode(token_ids[P:])!r}; T={T}")
    print(
        f"min top-1/top-2 logit gap over greedy steps: {min_gap:.6g} (gaps {[round(g, 4) for g in gaps]})"
    )
    print(f"max |logits64 - logits32| = {np.abs(logits64 - logits32).max():.3g}")
    print(
        f"mean attention entropy {ent[..., 1:].mean():.3f} nats vs uniform {uni[1:].mean():.3f}; "
        f"mean max prob {attn64.max(-1)[..., 1:].mean():.3f}"
    )
    print(f"safetensors keys ({len(keys)}): {keys}")
    total = 0
    for name in sorted(os.listdir(args.out)):
        size = os.path.getsize(os.path.join(args.out, name))
        total += size
        print(f"  {name}: {size} bytes")
    print(f"  total: {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
