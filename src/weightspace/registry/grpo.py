"""Offline GRPO: group-centred advantages (plus a bias) weighting each rollout's NLL; no ratio, clip or KL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..core.schema import Number, Positive, Section
from ._entry import Method

if TYPE_CHECKING:
    import torch

    from ._batch import Batch


class GRPO(Section):
    lr: Positive
    bias: Number
    std_norm: Literal["none", "group"]
    bias_scope: Literal["all", "all_correct"]


def grpo_advantages(reward: torch.Tensor, group: torch.Tensor, bias: float, std_norm: str, bias_scope: str,
                    eps: float = 1e-4) -> torch.Tensor:
    """Offline GRPO advantages over a whole rollout table; (R,) rewards and group ids -> (R,).

    A_i = (r_i - mean_g(r)) / s_g + b_i with
      s_g = 1 (``std_norm: none``, the paper) or std_g(r) + eps (``group``; sample std, ddof=1, as
      torch.std and TRL's GRPO; a single-row group has std 0);
      b_i = b for every row (``bias_scope: all``, the paper) or only in all-correct groups
      (``all_correct``, the KRAFTON variant).
    No importance ratio, clipping or KL: the rollouts are fixed."""
    import torch

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
    from ._batch import sequence_nll

    return (advantage.to(logp.dtype) * sequence_nll(logp, mask)).sum() / normaliser


def table(p: GRPO, rows: list[dict]) -> dict:
    """The advantages of the whole table, computed once (``losses.Batch.table``)."""
    import torch

    reward = torch.tensor([float(r["reward"]) for r in rows])
    return {"advantage": grpo_advantages(reward, torch.tensor([r["group"] for r in rows]), p.bias, p.std_norm,
                                         p.bias_scope)}


def batch_loss(p: GRPO, b: Batch) -> torch.Tensor:
    return grpo_loss(b.logp, b.mask, b.table["advantage"][b.rows].to(b.logp.device), b.normaliser)


METHOD = Method("grpo", GRPO, "all", loss=batch_loss, table=table, paper=5)
