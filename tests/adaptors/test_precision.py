"""Adaptor losses stay float32 under mixed precision: autocast is switched off inside every adaptor."""

from __future__ import annotations

import pytest
import torch

from adaptors import ADAPTORS, Taps
from tests.adaptors.test_properties import STUDENT_OF


def _bf16(taps: Taps) -> Taps:
    """Taps as a bf16-mixed forward pass produces them (projection outputs in bfloat16)."""
    return Taps(**{k: v if v is None or not v.is_floating_point() else v.bfloat16() for k, v in vars(taps).items()})


@pytest.mark.parametrize("name", [n for n in sorted(ADAPTORS) if not n.startswith(("LogitBinary", "LogitBCE"))])
def test_losses_are_float32_under_bf16_autocast(request, name, teacher_run, t_dims):
    key = STUDENT_OF[name]
    student_run = request.getfixturevalue(f"{key}_run")
    s_dims = request.getfixturevalue("s4_dims" if key == "student4" else "s_dims")
    adaptor = ADAPTORS[name](t_dims, s_dims)
    t, s = _bf16(teacher_run.taps), _bf16(student_run.taps)
    with torch.no_grad():
        plain = adaptor(t, s)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
            mixed = adaptor(t, s)
    assert mixed.dtype == torch.float32
    # Same value as without autocast: nothing inside ran in bfloat16 (bf16 maths would differ at ~1e-2).
    assert mixed.item() == pytest.approx(plain.item(), rel=1e-6, abs=1e-7)
