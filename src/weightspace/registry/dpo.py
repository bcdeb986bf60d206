"""DPO: the sigmoid preference loss on (correct, wrong) pairs against the base as reference."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..core.schema import Positive, Section
from ._entry import Method

if TYPE_CHECKING:
    import torch

    from ._batch import Batch


class DPO(Section):
    lr: Positive
    beta: Positive
    pairing: Literal["one", "all"]


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO, sigmoid loss (Rafailov et al. 2023, eq. 7), per pair; (P,) x 4 -> (P,):

    L = -log sigmoid(beta * [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))])

    with sequence log-probs summed over completion tokens. Policy == reference gives log 2 exactly.
    The training loop takes the mean over the pairs of the effective batch."""
    import torch.nn.functional as F

    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin)


def batch_loss(p: DPO, b: Batch) -> torch.Tensor:
    return dpo_loss(b.logps("chosen"), b.logps("rejected"), b.ref_logps("chosen"), b.ref_logps("rejected"),
                    p.beta).sum() / b.normaliser


METHOD = Method("dpo", DPO, "pairs", reference=True, normaliser="units", loss=batch_loss, paper=6)
