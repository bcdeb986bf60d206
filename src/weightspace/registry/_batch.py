"""What every offline loss shares: the sequence NLL and the micro-batch a loss sees (``Batch``). Each
method's own loss, a pure function of log-probabilities with its formula, lives in its registry module
(``registry/sft.py``, ``registry/dpo.py``, ...), which reads a ``Batch`` through ``Method.loss``. This module
belongs to the registry, not to the training loop: the loop builds a ``Batch``, a method's loss reads one,
and neither the registry nor the losses import the training code. Token log-probs: ``model.sequences``.

Notation: row i of an effective batch, completion token t, ``logp[i, t] = log pi_theta(y_t | x, y_<t)``
(B, T), ``mask[i, t]`` = 1 on completion tokens (B, T), sequence NLL ``l_i = -sum_t mask logp``,
``sg`` = stop-gradient. Token-level losses share one normaliser: ``N`` = the number of completion
tokens in the rows the method trains on in this effective batch (summed over micro-batches and
processes), so micro-batch losses add up to the effective-batch loss. Pair and unpaired-preference
losses are per unit; the loop divides their sum by the number of units of the effective batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch



def sequence_nll(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """l_i = -sum_t mask_it logp_it; (B, T) -> (B,)."""
    return -(logp * mask).sum(dim=-1)


# ---------------------------------------------------------------- what a method's loss sees
@dataclass(frozen=True)
class Batch:
    """One micro-batch as a loss sees it. ``logp``/``mask`` (B, T) over the flat sequences of the units
    (a pair: chosen then rejected; an unpaired unit: its row then its mismatched sequence); ``rows`` (B,)
    the table row of each sequence (of a mismatched one: the row whose completion it borrows);
    ``reward`` (R,) and ``table`` (per-row tensors a method computes once over the whole table, e.g.
    GRPO's advantages) are indexed by table row; ``ref`` (B,) the
    reference's sequence log-probs (methods with ``reference``); ``normaliser`` as the method's
    ``normaliser`` counts it over the effective batch; ``sequences`` the names of a unit's sequences
    (``units.sequences``), by which a loss reads its columns (``column``)."""
    logp: torch.Tensor
    mask: torch.Tensor
    rows: torch.Tensor
    reward: torch.Tensor
    table: dict
    ref: Optional[torch.Tensor]
    normaliser: float
    sequences: tuple[str, ...] = ("row",)

    def column(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The entries of per-sequence ``x`` (B,) that are sequence ``name`` of their unit: (units,)."""
        return x.view(-1, len(self.sequences))[:, self.sequences.index(name)]

    def logps(self, name: str) -> torch.Tensor:
        """Policy sequence log-probs sum_t mask logp of sequence ``name`` of each unit."""
        return self.column(name, self.seq())

    def ref_logps(self, name: str) -> torch.Tensor:
        """The reference's sequence log-probs of sequence ``name`` of each unit, in the policy's dtype."""
        return self.column(name, self.ref.to(torch.promote_types(self.logp.dtype, self.mask.dtype)))

    def lengths(self, name: str) -> torch.Tensor:
        """Completion lengths |y| (at least 1) of sequence ``name`` of each unit."""
        return self.column(name, self.mask.sum(-1).clamp(min=1))

    def mean_logps(self, name: str) -> torch.Tensor:
        """Length-averaged policy log-probs (1/|y|) sum_t log pi(y_t) of sequence ``name`` of each unit."""
        return self.column(name, self.seq() / self.mask.sum(-1).clamp(min=1))

    def unit_rows(self, name: str) -> torch.Tensor:
        """The table row of sequence ``name`` of each unit."""
        return self.column(name, self.rows)

    def seq(self) -> torch.Tensor:
        """Sequence log-probs sum_t mask logp (B,)."""
        return (self.logp * self.mask).sum(-1)
