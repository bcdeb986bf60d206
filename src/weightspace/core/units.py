"""The kinds of training unit a method trains on (``registry.Method.units``), each with the names of its
sequences in the order the loop lays them out (``training.unit_items``) and a loss reads them back by
name (``losses.Batch.column``):

- a row id (``int``): one sequence, ``row`` (rows ``all``, ``positive``);
- ``Preference`` (chosen, rejected): ``chosen`` then ``rejected`` (rows ``pairs``);
- ``Mismatch`` (row, other): ``row``'s own sequence, then ``mismatched``: ``other``'s completion under
  ``row``'s prompt (rows ``unpaired``, KTO's KL estimate).

An online method's units are prompt groups; its trainer, not this loop, turns them into sequences."""

from __future__ import annotations


class Preference(tuple):
    """A (chosen, rejected) pair of row ids: the correct and the wrong completion of one prompt."""
    SEQUENCES = ("chosen", "rejected")


class Mismatch(tuple):
    """An unpaired unit (row, other): ``row``'s own sequence, and ``other``'s completion under ``row``'s
    prompt (the mismatched sequence of KTO's KL estimate)."""
    SEQUENCES = ("row", "mismatched")


ROW = ("row",)  # the sequence of a row unit (an int)


def sequences(rows: str) -> tuple[str, ...]:
    """The names of the sequences of one unit of a method whose ``Method.rows`` is ``rows``."""
    return {"all": ROW, "positive": ROW, "pairs": Preference.SEQUENCES, "unpaired": Mismatch.SEQUENCES}[rows]
