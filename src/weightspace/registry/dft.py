"""DFT: dynamic fine-tuning, each token's NLL weighted by its own detached probability."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.schema import Positive, Section
from ._entry import Method

if TYPE_CHECKING:
    import torch

    from ._batch import Batch


class DFT(Section):
    lr: Positive


def dft_loss(logp: torch.Tensor, mask: torch.Tensor, normaliser: float) -> torch.Tensor:
    """DFT (dynamic fine-tuning, arXiv 2508.05629): L = (1/N) sum_i sum_t sg(p_it) * (-log p_it),
    p = exp(logp): each token's NLL weighted by its own detached probability. Same as TRL's
    ``SFTConfig(loss_type="dft")``."""
    return (-(logp.detach().exp() * logp) * mask).sum() / normaliser


def batch_loss(p: DFT, b: Batch) -> torch.Tensor:
    return dft_loss(b.logp, b.mask, b.normaliser)


METHOD = Method("dft", DFT, "all", loss=batch_loss, paper=3)
