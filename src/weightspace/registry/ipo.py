"""IPO: the squared, length-normalised preference loss on (correct, wrong) pairs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..core.schema import Positive, Section
from ._entry import Method

if TYPE_CHECKING:
    import torch

    from ._batch import Batch


class IPO(Section):
    lr: Positive
    tau: Positive  # the IPO regulariser: the loss pulls the length-averaged log-ratio margin to 1/(2 tau)
    pairing: Literal["one", "all"]


def ipo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, n_chosen: torch.Tensor, n_rejected: torch.Tensor, tau: float) -> torch.Tensor:
    """IPO (Azar et al. 2023, eq. 17), per pair; (P,) x 6 -> (P,):

    h = (log pi(y_w) - log pi_ref(y_w)) / |y_w| - (log pi(y_l) - log pi_ref(y_l)) / |y_l|,
    L = (h - 1/(2 tau))^2

    with sequence log-probs summed over completion tokens and divided by the completion length |y|, as
    TRL's ``DPOConfig(loss_type="ipo")`` does (its comment: the IPO authors' own results use this
    length-normalised form). Policy == reference gives 1/(4 tau^2)."""
    h = (policy_chosen - ref_chosen) / n_chosen - (policy_rejected - ref_rejected) / n_rejected
    return (h - 1 / (2 * tau)) ** 2


def batch_loss(p: IPO, b: Batch) -> torch.Tensor:
    return ipo_loss(b.logps("chosen"), b.logps("rejected"), b.ref_logps("chosen"), b.ref_logps("rejected"),
                    b.lengths("chosen"), b.lengths("rejected"), p.tau).sum() / b.normaliser


METHOD = Method("ipo", IPO, "pairs", reference=True, normaliser="units", loss=batch_loss)
