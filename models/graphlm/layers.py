"""Decoder building blocks and the Backbone (layer stack only): RMSNorm, RoPE, SwiGLU, attention."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention.flex_attention import flex_attention

from .config import GraphLMConfig
from .masks import AttentionMask


@lru_cache(maxsize=1)
def _compiled_flex_attention():
    # FlexAttention is only fast when compiled; compile once per process, lazily.
    return torch.compile(flex_attention, dynamic=False)


def _one_dtype(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """q, k and v in the projection's dtype (v's: nothing after the projection touches it).

    Attention kernels require one dtype (compiled FlexAttention's backward rejects a mix); under
    autocast the projection gives bf16 while fp32 parameters mixed into q or k would promote them.
    """
    return q.to(v.dtype), k.to(v.dtype), v


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned scale (no bias, no mean subtraction)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def rotary_tables(positions: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos/sin tables for positions [T] (shared by the batch: tables [T, head_dim/2]) or per pack
    [B, T] (tables [B, 1, T, head_dim/2], broadcast over heads)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim)
    angles = positions.float()[..., None] * inv_freq
    if positions.dim() == 2:
        angles = angles[:, None]
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (first half, second half) of the head dimension of x [B, H, T, D]."""
    first, second = x.float().chunk(2, dim=-1)
    rotated = torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)
    return rotated.type_as(x)


class SwiGLU(nn.Module):
    """Gated MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, d_ff, bias=False)
        self.up = nn.Linear(d_model, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class KVCache:
    """Per-layer keys/values of everything processed so far (inference only)."""

    def __init__(self, n_layers: int) -> None:
        self.layers: list[tuple[Tensor, Tensor] | None] = [None] * n_layers
        #: Per layer, the last position's key before smearing and rotation (smeared keys only).
        self.last_keys: list[Tensor | None] = [None] * n_layers

    @property
    def length(self) -> int:
        first = self.layers[0]
        return 0 if first is None else first[0].shape[2]

    def extend(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        cached = self.layers[layer]
        if cached is not None:
            k, v = torch.cat((cached[0], k), dim=2), torch.cat((cached[1], v), dim=2)
        self.layers[layer] = (k, v)
        return k, v


class Attention(nn.Module):
    """Multi-head self-attention with RoPE; the kernel follows the batch's AttentionMask."""

    def __init__(self, config: GraphLMConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.head_dim
        self.compile = config.compile
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.out = nn.Linear(config.d_model, config.d_model, bias=False)
        self.smear = nn.Parameter(torch.zeros(config.n_heads)) if config.smear_keys else None

    def _smear(self, k: Tensor, mask: AttentionMask, cache: KVCache | None, layer: int) -> Tensor:
        """k_t + sigmoid(w_h) * (k_{t-1} - k_t) where t - 1 is in t's document (see GraphLMConfig)."""
        if mask.continues is None:
            raise ValueError("smear_keys needs the mask's `continues` (build it with build_attention_mask)")
        first = cache.last_keys[layer] if cache is not None else None
        first = torch.zeros_like(k[:, :, :1]) if first is None else first
        previous = torch.cat((first, k[:, :, :-1]), dim=2)
        if cache is not None:
            cache.last_keys[layer] = k[:, :, -1:]
        # The fp32 parameter would promote bf16 keys to fp32 under autocast: blend in k's dtype.
        weight = torch.sigmoid(self.smear).to(k.dtype).view(1, -1, 1, 1) * mask.continues[:, None, :, None].to(k.dtype)
        return k + weight * (previous - k)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, mask: AttentionMask,
        cache: KVCache | None = None, layer: int = 0,
    ) -> Tensor:
        batch, seq, _ = x.shape
        q, k, v = self.qkv(x).view(batch, seq, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.smear is not None:
            k = self._smear(k, mask, cache, layer)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.extend(layer, k, v)
        q, k, v = _one_dtype(q, k, v)
        if mask.block_mask is not None:
            # Eager FlexAttention materialises the full score matrix; on CUDA the fused kernel
            # needs torch.compile, so it is always used there (compile=true adds the blocks).
            kernel = _compiled_flex_attention() if (q.is_cuda or self.compile) else flex_attention
            y = kernel(q, k, v, block_mask=mask.block_mask)
        elif mask.dense is not None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.dense)
        else:
            if cache is not None and cache.length != seq:
                raise ValueError("causal SDPA fast path cannot be used with a non-empty KV cache; pass a dense mask")
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(batch, seq, -1))


class Block(nn.Module):
    """Pre-norm decoder block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GraphLMConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attn = Attention(config)
        self.mlp_norm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = SwiGLU(config.d_model, config.d_ff)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: AttentionMask,
                cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, cache, layer)
        return x + self.mlp(self.mlp_norm(x))


class Backbone(nn.Module):
    """The layer stack only: hidden states [B, T, d] in, hidden states out.

    RoPE positions default to absolute positions in the pack, so relative distances inside a
    document are the same wherever it sits, and linked context documents are consistently "in the
    past". Per-pack `positions` [B, T] (e.g. restarting at 0 per document) replace them.
    """

    def __init__(self, config: GraphLMConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))

    def forward(self, hidden: Tensor, mask: AttentionMask, positions: Tensor | None = None,
                cache: KVCache | None = None) -> Tensor:
        if positions is None:
            start = cache.length if cache is not None else 0
            positions = torch.arange(start, start + hidden.shape[1], device=hidden.device)
        cos, sin = rotary_tables(positions, self.config.head_dim, self.config.rope_theta)
        for index, layer in enumerate(self.layers):
            hidden = layer(hidden, cos, sin, mask, cache, index)
        return hidden

    def reset_parameters(self, std: float) -> None:
        """GPT-2-style init: normal(std), residual projections scaled by 1/sqrt(2 * n_layers)."""
        residual_std = std / math.sqrt(2 * self.config.n_layers)
        for name, param in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(param)
            elif name.endswith("attn.smear"):
                nn.init.zeros_(param)
            elif name.endswith(("out.weight", "down.weight")):
                nn.init.normal_(param, mean=0.0, std=residual_std)
            else:
                nn.init.normal_(param, mean=0.0, std=std)
