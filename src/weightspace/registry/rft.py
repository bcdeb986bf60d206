"""RFT: rejection-sampling fine-tuning, SFT on the correct rollouts only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.schema import Positive, Section
from ._entry import Method

if TYPE_CHECKING:
    import torch

    from ._batch import Batch


class RFT(Section):
    lr: Positive


def rft_loss(logp: torch.Tensor, mask: torch.Tensor, reward: torch.Tensor, normaliser: float) -> torch.Tensor:
    """RFT (rejection-sampling fine-tuning): L = (1/N) sum_i r_i l_i, r_i in {0, 1}.

    The rows are already filtered to r_i = 1 (``METHOD``: rows "positive"), so N counts positive tokens only
    and on an all-correct batch RFT equals SFT; the r_i factor keeps a stray negative row from training."""
    from ._batch import sequence_nll

    return (reward * sequence_nll(logp, mask)).sum() / normaliser


def batch_loss(p: RFT, b: Batch) -> torch.Tensor:
    return rft_loss(b.logp, b.mask, b.reward[b.rows].to(b.logp.device), b.normaliser)


METHOD = Method("rft", RFT, "positive", loss=batch_loss, paper=2, family=True)
