"""A pair of methods (or models) and its key in the metrics files, ``"a-b"``, and a method's seed twin, named
``<method>_seed``. Method names are the registry's module names (Python identifiers) and a twin's adds ``_seed``, so
they never hold a "-" and a pair key splits one way only. Other keys may hold one (a sweep run, ``dpo_lr5e-06``):
parse only keys that name pairs."""

from __future__ import annotations

import itertools
from typing import NamedTuple, Optional


class Pair(NamedTuple):
    a: str
    b: str

    @classmethod
    def parse(cls, key: str) -> Pair:
        """``"sft-dpo"`` -> Pair("sft", "dpo"); ValueError naming the key for anything else."""
        pair = cls.maybe(key)
        if pair is None:
            raise ValueError(f"{key!r} is not a pair key 'a-b'")
        return pair

    @classmethod
    def maybe(cls, key: str) -> Optional[Pair]:
        """The pair a key names, or None where it names none (``"global"``, ``"a-b-c"``)."""
        parts = key.split("-")
        return cls(*parts) if len(parts) == 2 and all(parts) else None

    @property
    def key(self) -> str:
        return f"{self.a}-{self.b}"


def combinations(names) -> list[Pair]:
    """Every unordered pair of ``names``, in ``itertools.combinations`` order."""
    return [Pair(a, b) for a, b in itertools.combinations(names, 2)]


def lookup(d: dict, a: str, b: str, default=None):
    """``d["a-b"]``, else ``d["b-a"]``, else ``default``."""
    return d.get(Pair(a, b).key, d.get(Pair(b, a).key, default))


class Twin(NamedTuple):
    """The seed twin of ``method``: the method retrained from ``controls.seed``'s init and row order. Its name in
    params (connectivity pairs) and in metric keys is ``<method>_seed``."""
    method: str

    SUFFIX = "_seed"

    @property
    def name(self) -> str:
        return self.method + self.SUFFIX

    @classmethod
    def maybe(cls, name: str) -> Optional[Twin]:
        """The twin ``name`` names (``"sft_seed"`` -> Twin("sft")), or None for a method's own name."""
        return cls(name.removesuffix(cls.SUFFIX)) if name.endswith(cls.SUFFIX) else None


def method_of(name: str) -> str:
    """The method a model name was trained with: ``"sft"`` for ``"sft"`` and for its twin ``"sft_seed"``."""
    twin = Twin.maybe(name)
    return name if twin is None else twin.method
