"""SimPO: the reference-free, length-averaged preference loss with a target margin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..core.schema import Number, Positive, Section
from ._entry import Method

if TYPE_CHECKING:
    import torch

    from ._batch import Batch


class SimPO(Section):
    lr: Positive
    beta: Positive  # reward scale of the length-averaged log-probability
    gamma: Number  # target reward margin
    pairing: Literal["one", "all"]


def simpo_loss(avg_chosen: torch.Tensor, avg_rejected: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """SimPO (Meng et al. 2024, eq. 6), reference-free, per pair; (P,) x 2 -> (P,):

    L = -log sigmoid(beta/|y_w| log pi(y_w) - beta/|y_l| log pi(y_l) - gamma)

    where ``avg_*`` = (1/|y|) sum_t log pi(y_t) are length-averaged log-probs. TRL:
    ``CPOConfig(loss_type="simpo", cpo_alpha=0)``. Equal averages give log(1 + e^gamma)."""
    import torch.nn.functional as F

    return -F.logsigmoid(beta * (avg_chosen - avg_rejected) - gamma)


def batch_loss(p: SimPO, b: Batch) -> torch.Tensor:
    return simpo_loss(b.mean_logps("chosen"), b.mean_logps("rejected"), p.beta, p.gamma).sum() / b.normaliser


METHOD = Method("simpo", SimPO, "pairs", normaliser="units", loss=batch_loss)
