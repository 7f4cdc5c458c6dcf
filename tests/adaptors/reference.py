"""Slow, obvious reference losses written with explicit Python loops over layers, examples, heads and tokens.

Written independently of the vectorised implementations: tensors are turned into nested Python lists of floats and
every sum is spelled out. Lengths come from the attention mask (right padding), and only real tokens are visited.
"""

from __future__ import annotations

import math

from torch import Tensor


def _lengths(attention_mask: Tensor) -> list[int]:
    return [int(sum(row)) for row in attention_mask.tolist()]


def _softmax(xs: list[float]) -> list[float]:
    top = max(xs)
    exps = [math.exp(x - top) for x in xs]
    total = sum(exps)
    return [e / total for e in exps]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True) if pi > 0)


# ----------------------------------------------------------------------------------------------------------- logits


def logit_kd(z_t: Tensor, z_s: Tensor, temperature: float) -> float:
    total = 0.0
    rows_t, rows_s = z_t.tolist(), z_s.tolist()
    for zt, zs in zip(rows_t, rows_s, strict=True):
        p = _softmax([z / temperature for z in zt])
        q = _softmax([z / temperature for z in zs])
        total += _kl(p, q)
    return total / len(rows_t) * temperature**2


def logit_ce(z_t: Tensor, z_s: Tensor, temperature: float) -> float:
    total = 0.0
    rows_t, rows_s = z_t.tolist(), z_s.tolist()
    for zt, zs in zip(rows_t, rows_s, strict=True):
        p = _softmax([z / temperature for z in zt])
        q = _softmax([z / temperature for z in zs])
        total += -sum(pi * math.log(qi) for pi, qi in zip(p, q, strict=True))
    return total / len(rows_t)


def logit_mse(z_t: Tensor, z_s: Tensor, after_softmax: bool = False, temperature: float = 1.0) -> float:
    total, count = 0.0, 0
    for zt, zs in zip(z_t.tolist(), z_s.tolist(), strict=True):
        if after_softmax:
            zt = _softmax([z / temperature for z in zt])
            zs = _softmax([z / temperature for z in zs])
        for a, b in zip(zt, zs, strict=True):
            total += (a - b) ** 2
            count += 1
    return total / count


# -------------------------------------------------------------------------------------------------------- attention


def attn_tinybert(q_t: Tensor, k_t: Tensor, q_s: Tensor, k_s: Tensor, attention_mask: Tensor) -> float:
    """Mean squared difference of QKᵀ/√d over valid (query, key) pairs, heads and layers."""
    lengths = _lengths(attention_mask)
    qt, kt, qs, ks = q_t.tolist(), k_t.tolist(), q_s.tolist(), k_s.tolist()
    d_t, d_s = q_t.shape[-1], q_s.shape[-1]
    total, count = 0.0, 0
    for m in range(len(qt)):
        for b, n in enumerate(lengths):
            for h in range(len(qt[m][b])):
                for i in range(n):
                    for j in range(n):
                        a_t = _dot(qt[m][b][h][i], kt[m][b][h][j]) / math.sqrt(d_t)
                        a_s = _dot(qs[m][b][h][i], ks[m][b][h][j]) / math.sqrt(d_s)
                        total += (a_s - a_t) ** 2
                        count += 1
    return total / count


def kl_from_probabilities(att_t: list[Tensor], att_s: list[Tensor], attention_mask: Tensor) -> float:
    """KL(A_t ‖ A_s) over keys, averaged over valid queries, heads and layers, from attention probabilities.

    ``att_t``/``att_s`` are per-layer ``(B, heads, T, T)`` probabilities (e.g. the eager ``attentions`` output).
    """
    lengths = _lengths(attention_mask)
    total, count = 0.0, 0
    for layer_t, layer_s in zip(att_t, att_s, strict=True):
        pt, ps = layer_t.tolist(), layer_s.tolist()
        for b, n in enumerate(lengths):
            for h in range(len(pt[b])):
                for i in range(n):
                    # Padded keys must carry no probability mass in the model's own attention.
                    assert sum(pt[b][h][i][n:]) < 1e-6 and sum(ps[b][h][i][n:]) < 1e-6
                    total += _kl(pt[b][h][i][:n], ps[b][h][i][:n])
                    count += 1
    return total / count


def relation_kl(
    a_t: Tensor, b_t: Tensor, a_s: Tensor, b_s: Tensor, attention_mask: Tensor, relation_heads: int
) -> float:
    """MiniLM(v2) relation KL with ``relation_heads`` relation heads, from (M, B, heads, T, d) projections.

    For every token the heads are concatenated into one vector of width H, cut into ``relation_heads`` equal chunks,
    and relation r between tokens i and j is ``dot(chunk_r(a_i), chunk_r(b_j)) / sqrt(H / relation_heads)``.
    """
    lengths = _lengths(attention_mask)

    def token_vectors(x: Tensor) -> list:
        # (M, B, heads, T, d) -> nested lists [m][b][t] holding the token's heads concatenated (width H)
        xs = x.tolist()
        out = []
        for per_layer in xs:
            layer_out = []
            for per_example in per_layer:
                num_heads, num_tokens = len(per_example), len(per_example[0])
                tokens = []
                for t in range(num_tokens):
                    vector: list[float] = []
                    for h in range(num_heads):
                        vector.extend(per_example[h][t])
                    tokens.append(vector)
                layer_out.append(tokens)
            out.append(layer_out)
        return out

    vt_a, vt_b, vs_a, vs_b = map(token_vectors, (a_t, b_t, a_s, b_s))
    width_t, width_s = len(vt_a[0][0][0]), len(vs_a[0][0][0])
    r_t, r_s = width_t // relation_heads, width_s // relation_heads
    total, count = 0.0, 0
    for m in range(len(vt_a)):
        for b, n in enumerate(lengths):
            for r in range(relation_heads):
                for i in range(n):
                    qt = vt_a[m][b][i][r * r_t : (r + 1) * r_t]
                    qs = vs_a[m][b][i][r * r_s : (r + 1) * r_s]
                    p = _softmax([_dot(qt, vt_b[m][b][j][r * r_t : (r + 1) * r_t]) / math.sqrt(r_t) for j in range(n)])
                    q = _softmax([_dot(qs, vs_b[m][b][j][r * r_s : (r + 1) * r_s]) / math.sqrt(r_s) for j in range(n)])
                    total += _kl(p, q)
                    count += 1
    return total / count


# ----------------------------------------------------------------------------------------------------------- hidden


def _linear(weight: list, bias: list, x: list[float]) -> list[float]:
    return [_dot(row, x) + b for row, b in zip(weight, bias, strict=True)]


def hidden_mse(h_t: Tensor, h_s: Tensor, attention_mask: Tensor, proj=None) -> float:
    """Mean over valid tokens, layers and teacher features of (h_s W - h_t)², from (M, B, T, H) states."""
    lengths = _lengths(attention_mask)
    ht, hs = h_t.tolist(), h_s.tolist()
    w = b_ = None
    if proj is not None:
        w, b_ = proj.weight.tolist(), proj.bias.tolist()
    total, count = 0.0, 0
    for m in range(len(ht)):
        for b, n in enumerate(lengths):
            for i in range(n):
                s = hs[m][b][i] if w is None else _linear(w, b_, hs[m][b][i])
                for x, y in zip(s, ht[m][b][i], strict=True):
                    total += (x - y) ** 2
                    count += 1
    return total / count


def pkd(h_t: Tensor, h_s: Tensor, proj=None) -> float:
    """Mean over layers and examples of the squared distance between L2-normalised [CLS] (position 0) states."""
    ht, hs = h_t.tolist(), h_s.tolist()
    w = b_ = None
    if proj is not None:
        w, b_ = proj.weight.tolist(), proj.bias.tolist()
    total, count = 0.0, 0
    for m in range(len(ht)):
        for b in range(len(ht[m])):
            t = ht[m][b][0]
            s = hs[m][b][0] if w is None else _linear(w, b_, hs[m][b][0])
            nt, ns = math.sqrt(sum(x * x for x in t)), math.sqrt(sum(x * x for x in s))
            total += sum((x / ns - y / nt) ** 2 for x, y in zip(s, t, strict=True))
            count += 1
    return total / count


def ce_from_probabilities(att_t: list[Tensor], att_s: list[Tensor], attention_mask: Tensor) -> float:
    """Cross-entropy -Σ_j A_t log A_s over valid keys, averaged over valid queries, heads and layers."""
    lengths = _lengths(attention_mask)
    total, count = 0.0, 0
    for layer_t, layer_s in zip(att_t, att_s, strict=True):
        pt, ps = layer_t.tolist(), layer_s.tolist()
        for b, n in enumerate(lengths):
            for h in range(len(pt[b])):
                for i in range(n):
                    total += -sum(p * math.log(q) for p, q in zip(pt[b][h][i][:n], ps[b][h][i][:n], strict=True))
                    count += 1
    return total / count


def cosine(h_t: Tensor, h_s: Tensor, attention_mask: Tensor, proj=None) -> float:
    """Mean over valid tokens and layers of 1 - cos(h_s W, h_t), from (M, B, T, H) states."""
    lengths = _lengths(attention_mask)
    ht, hs = h_t.tolist(), h_s.tolist()
    w = b_ = None
    if proj is not None:
        w, b_ = proj.weight.tolist(), proj.bias.tolist()
    total, count = 0.0, 0
    for m in range(len(ht)):
        for b, n in enumerate(lengths):
            for i in range(n):
                s = hs[m][b][i] if w is None else _linear(w, b_, hs[m][b][i])
                t = ht[m][b][i]
                total += 1 - _dot(s, t) / (math.sqrt(_dot(s, s)) * math.sqrt(_dot(t, t)))
                count += 1
    return total / count


def pkd_at(h_t: Tensor, h_s: Tensor, positions: list[int], proj=None) -> float:
    """Like :func:`pkd`, reading example ``b``'s state at ``positions[b]`` instead of position 0."""
    ht, hs = h_t.tolist(), h_s.tolist()
    w = b_ = None
    if proj is not None:
        w, b_ = proj.weight.tolist(), proj.bias.tolist()
    total, count = 0.0, 0
    for m in range(len(ht)):
        for b, pos in enumerate(positions):
            t = ht[m][b][pos]
            s = hs[m][b][pos] if w is None else _linear(w, b_, hs[m][b][pos])
            nt, ns = math.sqrt(sum(x * x for x in t)), math.sqrt(sum(x * x for x in s))
            total += sum((x / ns - y / nt) ** 2 for x, y in zip(s, t, strict=True))
            count += 1
    return total / count
