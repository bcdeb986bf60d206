"""RIFT: reward-informed fine-tuning, MLE on correct rollouts and a bounded term on wrong ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..core.schema import NonNegative, Positive, Section
from ._entry import Method

if TYPE_CHECKING:
    import torch

    from ._batch import Batch


class RIFT(Section):
    lr: Positive
    variant: Literal["token", "sequence", "written"]
    neg_lambda: NonNegative  # a wrong row's reward is -lambda


def rift_loss(logp: torch.Tensor, mask: torch.Tensor, reward: torch.Tensor, normaliser: float, neg_lambda: float,
              variant: str) -> torch.Tensor:
    """RIFT (reward-informed fine-tuning, arXiv 2601.09253). Positives (r=1) get the MLE term; negatives
    (r=0, reward -lambda) a bounded term linear in the probability. Three forms (``rift.variant``):

    - ``token``:    L = (1/N) sum_t [ r_i (-log p_it) + (1 - r_i) lambda p_it ]   (default; keeps the
      negative term alive on long completions)
    - ``sequence``: L = (1/N) sum_i [ r_i l_i + (1 - r_i) lambda exp(-l_i) ]; pi(y|x) = exp(-l_i) ~ 0 for
      long completions, so the negative term and its gradient vanish: RIFT collapses to RFT
    - ``written``:  L = (1/N) sum_i (1 - r_i lambda) l_i, the paper's formula as printed (likely a typo:
      it trains on negatives with weight 1 and positives with weight 1 - lambda)
    """
    import torch

    from ._batch import sequence_nll

    r = reward.to(logp.dtype)
    if variant == "token":
        per_token = r[:, None] * (-logp) + (1 - r)[:, None] * neg_lambda * logp.exp()
        return (per_token * mask).sum() / normaliser
    nll = sequence_nll(logp, mask)
    if variant == "sequence":
        return (r * nll + (1 - r) * neg_lambda * torch.exp(-nll)).sum() / normaliser
    if variant == "written":
        return ((1 - r * neg_lambda) * nll).sum() / normaliser
    raise ValueError(f"rift.variant: unknown variant {variant!r}")


def batch_loss(p: RIFT, b: Batch) -> torch.Tensor:
    return rift_loss(b.logp, b.mask, b.reward[b.rows].to(b.logp.device), b.normaliser, p.neg_lambda, p.variant)


METHOD = Method("rift", RIFT, "all", loss=batch_loss, paper=4, family=True)
