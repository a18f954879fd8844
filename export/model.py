"""SASRec: causal self-attention over a user's recent items, predicting the next item.

Kang & McAuley (2018), "Self-Attentive Sequential Recommendation", with the item embedding
tied to the output layer. Sequences are *left*-padded with item index 0 to ``max_len``, so
the last position always holds the user's latest item and its hidden state is the user
vector. Serving scores ``user_vector @ item_table.T`` outside the network, which is why the
ONNX graph stops at the user vector: new items can be appended to the table without a new
graph.

The attention is written with plain matmuls instead of ``nn.MultiheadAttention`` so the
exported ONNX graph is small and both torch exporters handle it the same way.

>>> import torch
>>> model = SASRec(n_items=10, dim=8, max_len=5, n_blocks=1, n_heads=1, seed=0).eval()
>>> model(torch.tensor([[0, 0, 3, 4, 5]])).shape
torch.Size([1, 8])
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class SASRecConfig:
    """Hyper-parameters of a ``SASRec``; stored in the manifest so a model can be rebuilt."""

    n_items: int
    dim: int = 64
    max_len: int = 50
    n_blocks: int = 2
    n_heads: int = 1
    dropout: float = 0.2

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class _CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} must be divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        batch, length, dim = queries.shape
        q = self._heads(self.query(queries))
        k = self._heads(self.key(keys))
        v = self._heads(self.value(keys))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + mask
        weights = self.dropout(torch.softmax(scores, dim=-1))
        context = (weights @ v).transpose(1, 2).reshape(batch, length, dim)
        return self.out(context)


class _Block(nn.Module):
    """Pre-norm block as in the SASRec reference code: Q from LN(x), K = V = x."""

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.attn = _CausalSelfAttention(dim, n_heads, dropout)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-8)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        q = self.attn_norm(x)
        x = q + self.attn(q, x, mask)
        y = self.ffn_norm(x)
        x = y + self.ffn(y)
        return x * keep  # padding positions stay exactly zero


class SASRec(nn.Module):
    """Self-attentive sequential recommender; ``forward`` returns the user vectors.

    Item index 0 is padding; real items are ``1..n_items``. ``seed`` fixes the initial
    weights (the training loop fixes the rest of the randomness).
    """

    def __init__(self, n_items: int, dim: int = 64, max_len: int = 50, n_blocks: int = 2,
                 n_heads: int = 1, dropout: float = 0.2, seed: int = 0) -> None:
        super().__init__()
        self.config = SASRecConfig(n_items, dim, max_len, n_blocks, n_heads, dropout)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # weights depend on the seed only, not on earlier draws
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, dim)
        self.emb_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(dim, n_heads, dropout) for _ in range(n_blocks))
        self.final_norm = nn.LayerNorm(dim, eps=1e-8)
        nn.init.normal_(self.item_emb.weight, std=dim ** -0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        torch.random.set_rng_state(generator_state)
        # A large finite negative instead of -inf: a query at a padding position sees only
        # padding keys, and -inf there would give NaN rows (harmless but they poison
        # parity checks and gradients).
        causal = torch.triu(torch.full((max_len, max_len), -1e9), diagonal=1)
        self.register_buffer("causal_mask", causal, persistent=False)

    @classmethod
    def from_config(cls, config: SASRecConfig, seed: int = 0) -> "SASRec":
        return cls(config.n_items, config.dim, config.max_len, config.n_blocks,
                   config.n_heads, config.dropout, seed)

    def hidden(self, item_seq: torch.Tensor) -> torch.Tensor:
        """Hidden states ``[batch, max_len, dim]`` of left-padded ``item_seq``."""
        length = item_seq.shape[1]
        keep = (item_seq != 0).unsqueeze(-1).to(self.item_emb.weight.dtype)
        x = self.item_emb(item_seq) * math.sqrt(self.config.dim)
        x = x + self.pos_emb.weight[:length].unsqueeze(0)
        x = self.emb_dropout(x) * keep
        key_padding = (1.0 - keep.transpose(1, 2)).unsqueeze(1) * -1e9  # [b, 1, 1, L]
        causal: torch.Tensor = self.causal_mask  # type: ignore[assignment]
        mask = causal[:length, :length] + key_padding
        for block in self.blocks:
            x = block(x, mask, keep)
        return self.final_norm(x)

    def forward(self, item_seq: torch.Tensor) -> torch.Tensor:
        """User vectors ``[batch, dim]``: the hidden state at the last (newest) position."""
        return self.hidden(item_seq)[:, -1, :]

    def item_table(self) -> torch.Tensor:
        """The tied output embeddings ``[n_items + 1, dim]`` (row 0 = padding)."""
        return self.item_emb.weight.detach()
