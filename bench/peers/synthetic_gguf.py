#!/usr/bin/env python3
"""A GGUF of one of minilab's synthetic presets, random weights in F16, for llama.cpp's llama-bench.

minilab's `synthetic:NAME` models (src/model/config.rs, LlamaConfig::preset) have the shapes of real
models and seeded random weights. llama-bench needs only those shapes. The vocabulary is a placeholder
SentencePiece one ("t0", "t1", …) of the right size, so the model loads and the embedding and head
have their real cost. Needs numpy and the `gguf` package: llama.cpp's own gguf-py (PYTHONPATH=llama.cpp/gguf-py),
which matches the llama.cpp it is benched with.

Usage: synthetic_gguf.py PRESET OUT.gguf [--seed N]
"""
import argparse
import sys
import types

import numpy as np

# (hidden, intermediate, layers, heads, kv_heads, head_dim, vocab, rope_theta, tied)
PRESETS = {
    "llama-3.2-1b": (2048, 8192, 16, 32, 8, 64, 128256, 500000.0, True),
    "llama-3.2-3b": (3072, 8192, 28, 24, 8, 128, 128256, 500000.0, True),
    "llama-3.1-8b": (4096, 14336, 32, 32, 8, 128, 128256, 500000.0, False),
    "tiny": (64, 128, 2, 4, 2, 16, 256, 10000.0, True),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset", choices=sorted(PRESETS))
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        import yaml  # noqa: F401
    except ImportError:
        # gguf.metadata imports PyYAML for model cards; writing tensors and keys never calls it.
        sys.modules["yaml"] = types.ModuleType("yaml")
    try:
        import gguf
    except ImportError:
        print("error: the gguf package is missing (PYTHONPATH=llama.cpp/gguf-py)", file=sys.stderr)
        return 1
    h, i, layers, heads, kv, hd, vocab, theta, tied = PRESETS[args.preset]
    rng = np.random.default_rng(args.seed)
    w = gguf.GGUFWriter(args.out, "llama")
    w.add_name(f"synthetic-{args.preset}")
    w.add_context_length(8192)
    w.add_embedding_length(h)
    w.add_block_count(layers)
    w.add_feed_forward_length(i)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("llama")
    specials = ["<unk>", "<s>", "</s>"]
    w.add_token_list(specials + [f"t{n}" for n in range(vocab - len(specials))])
    w.add_token_scores([0.0] * vocab)
    w.add_token_types([gguf.TokenType.CONTROL] * len(specials) + [gguf.TokenType.NORMAL] * (vocab - len(specials)))
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def dense(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    def norm() -> np.ndarray:
        return np.ones(h, dtype=np.float32)

    w.add_tensor("token_embd.weight", dense(vocab, h))
    for n in range(layers):
        p = f"blk.{n}"
        w.add_tensor(f"{p}.attn_norm.weight", norm())
        w.add_tensor(f"{p}.attn_q.weight", dense(heads * hd, h))
        w.add_tensor(f"{p}.attn_k.weight", dense(kv * hd, h))
        w.add_tensor(f"{p}.attn_v.weight", dense(kv * hd, h))
        w.add_tensor(f"{p}.attn_output.weight", dense(h, heads * hd))
        w.add_tensor(f"{p}.ffn_norm.weight", norm())
        w.add_tensor(f"{p}.ffn_gate.weight", dense(i, h))
        w.add_tensor(f"{p}.ffn_up.weight", dense(i, h))
        w.add_tensor(f"{p}.ffn_down.weight", dense(h, i))
    w.add_tensor("output_norm.weight", norm())
    if not tied:
        w.add_tensor("output.weight", dense(vocab, h))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
