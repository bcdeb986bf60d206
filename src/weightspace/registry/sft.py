"""SFT: supervised fine-tuning on every rollout, correct and incorrect."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.schema import Positive, Section
from ._entry import Method

if TYPE_CHECKING:
    import torch

    from ._batch import Batch


class SFT(Section):
    lr: Positive


def sft_loss(logp: torch.Tensor, mask: torch.Tensor, normaliser: float) -> torch.Tensor:
    """SFT: L = (1/N) sum_i l_i over all rollouts, correct and incorrect (``losses.sequence_nll``)."""
    from ._batch import sequence_nll

    return sequence_nll(logp, mask).sum() / normaliser


def batch_loss(p: SFT, b: Batch) -> torch.Tensor:
    return sft_loss(b.logp, b.mask, b.normaliser)


METHOD = Method("sft", SFT, "all", loss=batch_loss, paper=1, family=True)
