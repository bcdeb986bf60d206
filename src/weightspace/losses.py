"""The six offline losses, as pure functions of log-probabilities (they never see a model).

Notation: row i of an effective batch, completion token t, ``logp[i, t] = log pi_theta(y_t | x, y_<t)``
(B, T), ``mask[i, t]`` = 1 on completion tokens (B, T), sequence NLL ``l_i = -sum_t mask logp``,
``sg`` = stop-gradient. Token-level losses share one normaliser: ``N`` = the number of completion
tokens in the rows the method trains on in this effective batch (summed over micro-batches and
processes), so micro-batch losses add up to the effective-batch loss. Pair and unpaired-preference
losses are per unit; the loop divides their sum by the number of units of the effective batch. Which
rows a method trains on: the registry, ``registry.py``; which of these losses it uses on a micro-batch:
``BATCH_LOSS`` at the end of this module (an online method has none: its trainer's own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import torch
import torch.nn.functional as F

from .sequences import BLOCK_ELEMENTS, token_logps  # noqa: F401  (the losses' log-probs, imported from here too)

if TYPE_CHECKING:
    from .registry import DPO, GRPO, IPO, KTO, SimPO

def sequence_nll(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """l_i = -sum_t mask_it logp_it; (B, T) -> (B,)."""
    return -(logp * mask).sum(dim=-1)


def sft_loss(logp: torch.Tensor, mask: torch.Tensor, normaliser: float) -> torch.Tensor:
    """SFT: L = (1/N) sum_i l_i over all rollouts, correct and incorrect."""
    return sequence_nll(logp, mask).sum() / normaliser


def rft_loss(logp: torch.Tensor, mask: torch.Tensor, reward: torch.Tensor, normaliser: float) -> torch.Tensor:
    """RFT (rejection-sampling fine-tuning): L = (1/N) sum_i r_i l_i, r_i in {0, 1}.

    The rows are already filtered to r_i = 1 (``registry.REGISTRY``), so N counts positive tokens only and
    on an all-correct batch RFT equals SFT; the r_i factor keeps a stray negative row from training."""
    return (reward * sequence_nll(logp, mask)).sum() / normaliser


def dft_loss(logp: torch.Tensor, mask: torch.Tensor, normaliser: float) -> torch.Tensor:
    """DFT (dynamic fine-tuning, arXiv 2508.05629): L = (1/N) sum_i sum_t sg(p_it) * (-log p_it),
    p = exp(logp): each token's NLL weighted by its own detached probability. Same as TRL's
    ``SFTConfig(loss_type="dft")``."""
    return (-(logp.detach().exp() * logp) * mask).sum() / normaliser


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


def grpo_advantages(reward: torch.Tensor, group: torch.Tensor, bias: float, std_norm: str, bias_scope: str,
                    eps: float = 1e-4) -> torch.Tensor:
    """Offline GRPO advantages over a whole rollout table; (R,) rewards and group ids -> (R,).

    A_i = (r_i - mean_g(r)) / s_g + b_i with
      s_g = 1 (``std_norm: none``, the paper) or std_g(r) + eps (``group``; sample std, ddof=1, as
      torch.std and TRL's GRPO; a single-row group has std 0);
      b_i = b for every row (``bias_scope: all``, the paper) or only in all-correct groups
      (``all_correct``, the KRAFTON variant).
    No importance ratio, clipping or KL: the rollouts are fixed."""
    reward = reward.to(torch.float64)
    uniq, inv = torch.unique(group, return_inverse=True)
    count = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, torch.ones_like(reward))
    mean = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, reward) / count
    centred = reward - mean[inv]
    if std_norm == "group":
        ss = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, centred**2)
        std = torch.where(count > 1, (ss / (count - 1).clamp(min=1)).sqrt(), torch.zeros_like(ss))
        denom = std[inv] + eps
        centred = torch.where(denom > 0, centred / denom.clamp(min=1e-300), centred)  # equal rewards: stays 0
    elif std_norm != "none":
        raise ValueError(f"grpo.std_norm: unknown value {std_norm!r}")
    if bias_scope == "all":
        b = torch.full_like(reward, bias)
    elif bias_scope == "all_correct":
        b = torch.where(mean[inv] == 1.0, bias, 0.0).to(torch.float64)
    else:
        raise ValueError(f"grpo.bias_scope: unknown value {bias_scope!r}")
    return centred + b


def grpo_loss(logp: torch.Tensor, mask: torch.Tensor, advantage: torch.Tensor, normaliser: float) -> torch.Tensor:
    """Offline GRPO (the paper's variant): L = (1/N) sum_i A_i l_i with A from ``grpo_advantages``."""
    return (advantage.to(logp.dtype) * sequence_nll(logp, mask)).sum() / normaliser


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO, sigmoid loss (Rafailov et al. 2023, eq. 7), per pair; (P,) x 4 -> (P,):

    L = -log sigmoid(beta * [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))])

    with sequence log-probs summed over completion tokens. Policy == reference gives log 2 exactly.
    The training loop takes the mean over the pairs of the effective batch."""
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin)


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


def simpo_loss(avg_chosen: torch.Tensor, avg_rejected: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """SimPO (Meng et al. 2024, eq. 6), reference-free, per pair; (P,) x 2 -> (P,):

    L = -log sigmoid(beta/|y_w| log pi(y_w) - beta/|y_l| log pi(y_l) - gamma)

    where ``avg_*`` = (1/|y|) sum_t log pi(y_t) are length-averaged log-probs. TRL:
    ``CPOConfig(loss_type="simpo", cpo_alpha=0)``. Equal averages give log(1 + e^gamma)."""
    return -F.logsigmoid(beta * (avg_chosen - avg_rejected) - gamma)


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
    micro-batch needs at least 2 rows (``methods``: min_micro_batch) and z0 depends on its size.
    Policy == reference gives lambda/2 per row."""
    z0 = (policy_kl - ref_kl).mean().detach().clamp(min=0)
    r = policy - ref
    return torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * (r - z0))),
                       undesirable_weight * (1 - torch.sigmoid(beta * (z0 - r))))


# ---------------------------------------------------------------- what a method's loss sees
@dataclass(frozen=True)
class Batch:
    """One micro-batch as a loss sees it. ``logp``/``mask`` (B, T) over the flat sequences of the units
    (a pair: chosen then rejected; an unpaired unit: its row then its mismatched sequence); ``rows`` (B,)
    the table row of each sequence (of a mismatched one: the row whose completion it borrows);
    ``reward`` (R,) and ``table`` (per-row tensors a method computes once over the whole table, e.g.
    GRPO's advantages) are indexed by table row; ``ref`` (B,) the
    reference's sequence log-probs (methods with ``reference``); ``normaliser`` as the method's
    ``normaliser`` counts it over the effective batch."""
    logp: torch.Tensor
    mask: torch.Tensor
    rows: torch.Tensor
    reward: torch.Tensor
    table: dict
    ref: Optional[torch.Tensor]
    normaliser: float

    def seq(self) -> torch.Tensor:
        """Sequence log-probs sum_t mask logp (B,)."""
        return (self.logp * self.mask).sum(-1)


def _pairs(b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(policy, reference) sequence log-probs as (P, 2): column 0 chosen (or the row), 1 rejected (or its
    mismatched sequence)."""
    seq = b.seq().view(-1, 2)
    return seq, b.ref.to(seq.dtype).view(-1, 2)


def _pair_means(b: Batch) -> torch.Tensor:
    """Length-averaged policy log-probs (1/|y|) sum_t log pi(y_t) as (P, 2)."""
    return (b.seq() / b.mask.sum(-1).clamp(min=1)).view(-1, 2)


def _dpo(p: DPO, b: Batch) -> torch.Tensor:
    seq, ref = _pairs(b)
    return dpo_loss(seq[:, 0], seq[:, 1], ref[:, 0], ref[:, 1], p.beta).sum() / b.normaliser


def _ipo(p: IPO, b: Batch) -> torch.Tensor:
    n = b.mask.sum(-1).clamp(min=1).view(-1, 2)
    seq, ref = _pairs(b)
    return ipo_loss(seq[:, 0], seq[:, 1], ref[:, 0], ref[:, 1], n[:, 0], n[:, 1], p.tau).sum() / b.normaliser


def _simpo(p: SimPO, b: Batch) -> torch.Tensor:
    avg = _pair_means(b)
    return simpo_loss(avg[:, 0], avg[:, 1], p.beta, p.gamma).sum() / b.normaliser


def _kto(p: KTO, b: Batch) -> torch.Tensor:
    seq, ref = _pairs(b)  # column 0: the row, column 1: its mismatched sequence
    desirable = b.reward[b.rows.view(-1, 2)[:, 0]].to(seq.device) == 1
    return kto_loss(seq[:, 0], ref[:, 0], desirable, seq[:, 1], ref[:, 1], p.beta, p.desirable_weight,
                      p.undesirable_weight).sum() / b.normaliser


def _grpo_table(p: GRPO, rows: list[dict]) -> dict:
    reward = torch.tensor([float(r["reward"]) for r in rows])
    return {"advantage": grpo_advantages(reward, torch.tensor([r["group"] for r in rows]), p.bias, p.std_norm,
                                           p.bias_scope)}


# method -> (its params, the micro-batch) -> the micro-batch's loss
BATCH_LOSS: dict[str, Callable[[object, Batch], torch.Tensor]] = {
    "sft": lambda p, b: sft_loss(b.logp, b.mask, b.normaliser),
    "rft": lambda p, b: rft_loss(b.logp, b.mask, b.reward[b.rows].to(b.logp.device), b.normaliser),
    "dft": lambda p, b: dft_loss(b.logp, b.mask, b.normaliser),
    "rift": lambda p, b: rift_loss(b.logp, b.mask, b.reward[b.rows].to(b.logp.device), b.normaliser, p.neg_lambda,
                                   p.variant),
    "grpo": lambda p, b: grpo_loss(b.logp, b.mask, b.table["advantage"][b.rows].to(b.logp.device), b.normaliser),
    "dpo": _dpo,
    "ipo": _ipo,
    "simpo": _simpo,
    "kto": _kto,
}
# method -> (its params, the table's rows) -> per-row tensors computed once per table (``Batch.table``)
TABLES: dict[str, Callable[[object, list[dict]], dict]] = {"grpo": _grpo_table}
