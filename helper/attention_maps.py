"""Teacher and student attention maps of one validation example, drawn side by side for the run's dashboard.

The maps are recomputed from the query and key projections captured by :class:`helper.taps.ModelTaps`
(``softmax(Q Kᵀ / √d + mask)``, the same recomputation the attention adaptors use), not from ``output_attentions``, so
the models keep their fast attention. Heads are averaged, because teacher and student may have different head counts.
The figure is rendered with matplotlib into an RGB array and logged as an image, which works in offline wandb runs
and in TensorBoard alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from helper.taps import ModelTaps

__all__ = ["AttentionMaps", "attention_probabilities", "capture_attention", "log_image", "render"]


@dataclass
class AttentionMaps:
    """Head-averaged attention of the mapped layers for one example.

    Attributes:
        pairs: ``(student_layer, teacher_layer)`` pairs, 0-based encoder blocks.
        teacher: One ``(T, T)`` map per pair (rows: queries, columns: keys), real tokens only.
        student: Same for the student.
        tokens: The example's tokens (for axis labels).
    """

    pairs: list[tuple[int, int]]
    teacher: list[Tensor]
    student: list[Tensor]
    tokens: list[str]


def attention_probabilities(queries: Tensor, keys: Tensor) -> Tensor:
    """``softmax(Q Kᵀ / √d)`` over keys of ``(heads, T, d)`` projections of real tokens only; ``(heads, T, T)``."""
    scores = torch.matmul(queries.float(), keys.float().transpose(-1, -2)) / math.sqrt(queries.shape[-1])
    return torch.softmax(scores, dim=-1)


def capture_attention(model: nn.Module, inputs: dict[str, Tensor], layers: Sequence[int]) -> dict[int, Tensor]:
    """Head-averaged attention maps of ``layers`` for a one-example batch, from hooks on the q/k projections.

    Args:
        model: A Hugging Face classifier of a family :class:`ModelTaps` supports.
        inputs: Model inputs of one example (``(1, T)`` tensors with an ``attention_mask``).
        layers: 0-based encoder layers.

    Returns:
        ``{layer: (n, n)}`` maps over the example's ``n`` real tokens.
    """
    valid = inputs["attention_mask"][0].to(torch.bool)
    with ModelTaps(model, {"queries", "keys"}, sorted(set(layers))) as taps, torch.no_grad():
        model(**inputs)
        raw = taps.pop()
    out = {}
    for layer in layers:
        q = raw["queries"][layer][0][:, valid]  # (heads, n, d)
        k = raw["keys"][layer][0][:, valid]
        out[layer] = attention_probabilities(q, k).mean(dim=0).cpu()
    return out


def render(maps: AttentionMaps, title: str = "", max_labelled_tokens: int = 40) -> np.ndarray:
    """Draw teacher | student maps, one row per mapped pair, into an ``(H, W, 3)`` uint8 RGB image.

    Args:
        maps: What to draw.
        title: Figure title (e.g. the epoch).
        max_labelled_tokens: Tokens are written on the axes only up to this length.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = len(maps.pairs)
    n = len(maps.tokens)
    side = min(6.0, 2.0 + 0.15 * n)
    fig = Figure(figsize=(2 * side + 1.0, rows * side + 0.6), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 2, squeeze=False)
    for row, ((s_layer, t_layer), t_map, s_map) in enumerate(zip(maps.pairs, maps.teacher, maps.student, strict=True)):
        for col, (who, layer, values) in enumerate((("teacher", t_layer, t_map), ("student", s_layer, s_map))):
            ax = axes[row][col]
            image = ax.imshow(values.numpy(), vmin=0.0, vmax=float(max(t_map.max(), s_map.max())), cmap="viridis")
            ax.set_title(f"{who} layer {layer} (mean over heads)", fontsize=9)
            if n <= max_labelled_tokens:
                ax.set_xticks(range(n), maps.tokens, rotation=90, fontsize=6)
                ax.set_yticks(range(n), maps.tokens, fontsize=6)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
            ax.set_xlabel("key", fontsize=7)
            ax.set_ylabel("query", fontsize=7)
        fig.colorbar(image, ax=list(axes[row]), fraction=0.025)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def log_image(loggers: Sequence[Any], key: str, image: np.ndarray, step: int, caption: str = "") -> list[str]:
    """Log an RGB image with every logger that can take images; returns the names of those that could not.

    wandb (``WandbLogger.log_image``, also offline) and TensorBoard (``SummaryWriter.add_image``) are supported;
    any logger with a ``log_image(key=..., images=[...], step=...)`` method is used the same way as wandb's.
    """
    skipped = []
    for logger in loggers:
        experiment_add = getattr(getattr(logger, "experiment", None), "add_image", None)
        if hasattr(logger, "log_image"):
            kwargs = {"caption": [caption]} if caption else {}
            logger.log_image(key=key, images=[image], step=step, **kwargs)
        elif callable(experiment_add):
            experiment_add(key, image, step, dataformats="HWC")
        else:
            skipped.append(type(logger).__name__)
    return skipped
