"""KTO: the unpaired prospect-theoretic loss, each row against a KL estimate from mismatched pairs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.schema import Positive, Section
from ._entry import Method

if TYPE_CHECKING:
    import torch

    from ._batch import Batch


class KTO(Section):
    lr: Positive
    beta: Positive
    desirable_weight: Positive  # lambda_D, on correct rows
    undesirable_weight: Positive  # lambda_U, on wrong rows


def kto_loss(policy: torch.Tensor, ref: torch.Tensor, desirable: torch.Tensor, policy_kl: torch.Tensor,
             ref_kl: torch.Tensor, beta: float, desirable_weight: float, undesirable_weight: float) -> torch.Tensor:
    """KTO (Ethayarajh et al. 2024, eq. 7), unpaired, per row; (R,) x 5 -> (R,):

    r_i = log pi(y_i|x_i) - log pi_ref(y_i|x_i)  (sequence log-probs),
    z0 = max(0, mean_j [log pi(y'_j|x_j) - log pi_ref(y'_j|x_j)]), detached: the reference-KL estimate
         from mismatched pairs (x_j, y'_j), y'_j a completion written for another prompt,
    L_i = lambda_D (1 - sigmoid(beta (r_i - z0)))  for desirable rows (``desirable``, the correct ones),
    L_i = lambda_U (1 - sigmoid(beta (z0 - r_i)))  for undesirable rows.

    Same as TRL's ``KTOTrainer`` (loss_type "kto"). The mean for z0 runs over the rows given: the loop
    passes one micro-batch of one process (TRL: one micro-batch gathered over the processes), so a
    micro-batch needs at least 2 rows (``METHOD``: min_micro_batch) and z0 depends on its size.
    Policy == reference gives lambda/2 per row."""
    import torch

    z0 = (policy_kl - ref_kl).mean().detach().clamp(min=0)
    r = policy - ref
    return torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * (r - z0))),
                       undesirable_weight * (1 - torch.sigmoid(beta * (z0 - r))))


def batch_loss(p: KTO, b: Batch) -> torch.Tensor:
    policy = b.logps("row")
    desirable = b.reward[b.unit_rows("row")].to(policy.device) == 1
    return kto_loss(policy, b.ref_logps("row"), desirable, b.logps("mismatched"), b.ref_logps("mismatched"), p.beta,
                    p.desirable_weight, p.undesirable_weight).sum() / b.normaliser


METHOD = Method("kto", KTO, "unpaired", reference=True, normaliser="units", min_micro_batch=2, loss=batch_loss)
