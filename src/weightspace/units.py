"""The kinds of training unit a method trains on (``registry.Method.units``): a row id (``int``), a
(chosen, rejected) pair of row ids (``tuple``), or a ``Mismatch``. The loop (``training.unit_items``)
turns each into its sequences; a loss reads them in that order (``losses.Batch``)."""

from __future__ import annotations


class Mismatch(tuple):
    """An unpaired unit (row, other): ``row``'s own sequence, and ``other``'s completion under ``row``'s
    prompt (the mismatched sequence of KTO's KL estimate)."""
