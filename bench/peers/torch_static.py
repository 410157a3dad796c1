#!/usr/bin/env python3
"""The strongest PyTorch decode we know how to write, as a peer for `minilab bench`: a Llama forward
over a preallocated KV cache (every step the same shapes, the position a tensor), so that
torch.compile(mode="reduce-overhead", fullgraph=True) captures a decode step as one CUDA graph.
transformers' own StaticCache + torch.compile path segfaulted in transformers 5.17 (issue 11).

The weights are taken from a transformers LlamaForCausalLM (the random model torch_bnb.py saves), and
so are the RoPE tables (its rotary embedding, Llama 3 scaling included).

  python3 bench/peers/torch_static.py --check     # here, on the CPU: logits against transformers'
                                                  # (prefill and cached decode, eager and compiled)
torch_bnb.py runs it on the GPU as the `static` variant.
"""
import argparse
import sys

import torch
import torch.nn.functional as F


class StaticLlama(torch.nn.Module):
    """Batch-1 Llama over a static cache of `max_len` positions."""

    def __init__(self, hf, max_len):
        super().__init__()
        cfg = hf.config
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        m = hf.model
        self.embed = m.embed_tokens.weight
        self.layers = [
            (l.self_attn.q_proj.weight, l.self_attn.k_proj.weight, l.self_attn.v_proj.weight, l.self_attn.o_proj.weight,
             l.mlp.gate_proj.weight, l.mlp.up_proj.weight, l.mlp.down_proj.weight,
             l.input_layernorm.weight, l.post_attention_layernorm.weight)
            for l in m.layers
        ]
        self.norm, self.head = m.norm.weight, hf.lm_head.weight
        w = self.embed
        shape = (len(self.layers), 1, self.kv_heads, max_len, self.head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=w.dtype, device=w.device))
        self.register_buffer("v_cache", torch.zeros(shape, dtype=w.dtype, device=w.device))
        positions = torch.arange(max_len, device=w.device)[None]
        with torch.no_grad():
            cos, sin = m.rotary_emb(torch.zeros(1, dtype=w.dtype, device=w.device), positions)
        self.register_buffer("cos", cos[0])  # [max_len, head_dim]
        self.register_buffer("sin", sin[0])
        self.register_buffer("keys", torch.arange(max_len, device=w.device))

    def rms(self, x, w):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * w

    @staticmethod
    def rope(x, cos, sin):
        # the rotate-half convention of transformers' Llama: x [1, heads, t, d], cos/sin [t, d]
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def forward(self, ids, pos):
        """ids [1, t], pos [t] (the positions of the t tokens) → logits [1, t, vocab]."""
        t = ids.shape[1]
        x = F.embedding(ids, self.embed)
        cos, sin = self.cos[pos], self.sin[pos]
        # [1, 1, t, max_len]: query i sees the cached keys up to its own position
        mask = (self.keys[None, :] <= pos[:, None])[None, None]
        for i, (wq, wk, wv, wo, wg, wu, wd, n1, n2) in enumerate(self.layers):
            h = self.rms(x, n1)
            q = F.linear(h, wq).view(1, t, self.heads, self.head_dim).transpose(1, 2)
            k = F.linear(h, wk).view(1, t, self.kv_heads, self.head_dim).transpose(1, 2)
            v = F.linear(h, wv).view(1, t, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
            self.k_cache[i].index_copy_(2, pos, k)
            self.v_cache[i].index_copy_(2, pos, v)
            a = F.scaled_dot_product_attention(q, self.k_cache[i], self.v_cache[i], attn_mask=mask, enable_gqa=True)
            x = x + F.linear(a.transpose(1, 2).reshape(1, t, -1), wo)
            h = self.rms(x, n2)
            x = x + F.linear(F.silu(F.linear(h, wg)) * F.linear(h, wu), wd)
        return F.linear(self.rms(x, self.norm), self.head)


def compiled_step(model):
    """One decode step as a compiled function (a CUDA graph on the GPU)."""
    return torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)


def check():
    """On the CPU in f32: prefill and cached decode against transformers' logits, eager and compiled."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=3,
                      num_attention_heads=8, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
                      rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                         "high_freq_factor": 4.0,
                                                         "original_max_position_embeddings": 32},
                      tie_word_embeddings=True)
    hf = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 512, (1, 12))
    with torch.inference_mode():
        want = hf(ids).logits
        worst = 0.0
        for name, step in (("eager", None), ("compiled", True)):
            model = StaticLlama(hf, max_len=64)
            fwd = compiled_step(model) if step else model.forward
            got = [model.forward(ids[:, :8], torch.arange(8))]  # prefill eagerly, as the bench does
            for p in range(8, 12):
                got.append(fwd(ids[:, p:p + 1], torch.tensor([p])))
            err = (torch.cat(got, dim=1) - want).abs().max().item() / want.abs().max().item()
            print(f"{name}: max |static − transformers| / max |logit| = {err:.2e} over 8 prefilled + 4 decoded")
            worst = max(worst, err)
    if not worst < 1e-4:
        sys.exit(f"FAIL: {worst:.2e}")
    print("pass")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    if ap.parse_args().check:
        check()
    else:
        ap.print_help()
