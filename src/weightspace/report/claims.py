"""The paper's claims, each declared once and checked against this run's metric files.

A claim is data: (id, group, the quantity in words, how its value is read from the metric files,
a comparison, a threshold, the paper's value). Its sentence is rendered from that declaration, so
the text and the check cannot drift apart. ``holds`` is True/False, or None ("not measured") where
this run lacks the data (e.g. no AIME set). ``verdict`` adds "undecided": the value lies within its seed
band of the threshold (``noise.py``; the same claim on the seed twins' geometry), so the run cannot
say, rather than flipping between holds and fails with the rounding; an order (rises, largest,
smallest) is undecided where two neighbours are closer than their bands. The seed twins are evaluated
too (``accuracy.seed_twins``), so accuracy claims get the same seed band (a McNemar p of 200 items
moves a lot between seeds); DPO's accuracy margin takes the larger of that and its paired sampling
band. Thresholds are loose versions of the paper's numbers (../shared/PAPER.md), fixed before any
run: "about x" for a cosine is x +- about 0.2, for a ratio x / 2 .. x * 2; they are never tuned to a
run. Where the paper's point is an ordering rather than a value (SFT-GRPO CKA below the family's, a
barrier or none), the claim is one-sided. A claim that a method is far from another (online GRPO's
orthogonality) is "undecided" where the method is as far from its own seed twin (``Claim.seed_gate``):
far from everything is not a direction. CKA claims read the biased linear CKA, the statistic the
paper reports; the debiased one stands beside it in the metrics.

Comparisons apply to every element of a list value: ``>=``, ``<=``, ``<``, ``>``, ``in`` (closed
interval), ``|x| <=``; ``rises`` (strictly increasing list); ``largest`` / ``smallest`` (the key of
a dict value that must hold the extreme).

The verdict across replicate runs (``judge``; ``RULE``, declared before the replicates were run) is the
project's answer; the single-run verdict above, gated by one seed-twin draw, is a diagnostic. Each claim
is split into margins, numbers that are > 0 on the paper's side (``Claim.margins``: x - t for >=, t - x for
<=, both x - lo and hi - x for ``in``, t - |x|, each neighbour gap of an order, the extreme's lead over each
other key). A ``mean`` claim holds when every margin's 95% t-interval of the mean over the N runs lies
above 0, does not hold when any margin's interval lies below 0, and is undecided otherwise. A ``rate`` claim
(a significance test per run: its value is a p-value, and a p-value has no mean worth an interval) holds
when the 95% Clopper-Pearson interval of its hold rate k/N lies above 1/2, does not hold when it lies below
1/2, undecided otherwise (N = 10: holds at k >= 9, does not hold at k <= 1). Every claim also reports
"holds in k of N"; one whose hold rate lies strictly between 10% and 90% is ``unstable``: a single run's
verdict on it is a coin the rollout table tosses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable
from scipy.stats import beta, t as student_t

from .. import registry
from ..core.pairs import Pair, lookup
from ..function.stats import holm

FAMILY = registry.family()  # SFT, RFT, RIFT
SIX = registry.paper_six()  # the paper's methods: a claim over "every method" ranges over these, whatever else ran
FIVE = tuple(m for m in SIX if m != "dpo")  # the paper's non-DPO methods
ORDER = ("rft", "rift", "grpo", "dft", "dpo")  # a claim's content: the paper's angle order away from SFT


class NotMeasured(LookupError):
    """This run's metric files lack what a claim reads."""


def pair(d: dict, a: str, b: str):
    """``d["a-b"]`` or ``d["b-a"]``; NotMeasured when neither exists."""
    missing = object()
    v = lookup(d, a, b, missing)
    if v is missing:
        raise NotMeasured(f"pair {Pair(a, b).key}")
    return v


def _six(d: dict) -> dict:
    """``d`` restricted to the paper's six methods (a run may train more: registry.REGISTRY); NotMeasured
    when one of them is missing."""
    missing = [k for k in SIX if k not in d]
    if missing:
        raise NotMeasured(f"method(s) {', '.join(missing)} not trained")
    return {k: d[k] for k in SIX}


def _r(x):
    if isinstance(x, dict):
        return {k: _r(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_r(v) for v in x]
    return round(x, 4) if isinstance(x, float) else x


@dataclass(frozen=True)
class Claim:
    id: str
    group: str  # (i) .. (iv), "headline", "online", "controls"
    quantity: str  # what is measured, in words
    value: Callable[[dict], object]  # metrics -> a number, a list of numbers or a dict
    op: str  # see the module docstring
    threshold: object
    paper: str
    # metrics -> the value's sampling band (same shape), where the value has one beyond the seed twins'
    # (accuracy differences: the half-width of their 95% paired interval); None = none
    sampling_band: Callable[[dict], object] | None = None
    # metrics -> True where the method the claim is about is no further from the other method than from
    # its own seed twin (a direction not above its seed noise: "far from SFT" says nothing); the
    # verdict is then "undecided" whatever the value. None = no such gate
    seed_gate: Callable[[dict], bool] | None = None
    # how replicate runs decide it (``judge``): "mean" (every margin's interval of the mean) or "rate" (the
    # hold rate's interval; for a per-run significance test, whose value is a p-value)
    across: str = "mean"
    # the threshold's reason in one line (shown beside the claim in the report)
    why: str = ""

    def sentence(self) -> str:
        t = self.threshold
        cond = {"in": lambda: f"lies in [{t[0]}, {t[1]}]", "|x| <=": lambda: f"has |value| <= {t}",
                "rises": lambda: "rises strictly in that order", "largest": lambda: f"is largest for {t}",
                "smallest": lambda: f"is smallest for {t}"}.get(self.op, lambda: f"{self.op} {t}")()
        return f"{self.quantity} {cond}"

    def decide(self, v) -> bool:
        t, op = self.threshold, self.op
        if op in ("largest", "smallest"):
            return (max if op == "largest" else min)(v, key=v.get) == t
        if op == "rises":
            return all(a < b for a, b in zip(v, v[1:]))
        xs = v if isinstance(v, (list, tuple)) else [v]
        test = {">=": lambda x: x >= t, "<=": lambda x: x <= t, "<": lambda x: x < t, ">": lambda x: x > t,
                "in": lambda x: t[0] <= x <= t[1], "|x| <=": lambda x: abs(x) <= t}[op]
        return all(test(x) for x in xs)

    def margins(self, v) -> dict[str, float]:
        """The value as named margins, each > 0 on the paper's side and < 0 on the other (module docstring):
        ``decide(v)`` is (up to ties at 0 of a closed comparison) "every margin > 0"."""
        t, op = self.threshold, self.op
        if op in ("largest", "smallest"):
            sign = 1 if op == "largest" else -1
            return {f"{t} vs {k}": sign * (v[t] - v[k]) for k in v if k != t}
        if op == "rises":
            return {f"[{i + 1}] - [{i}]": v[i + 1] - v[i] for i in range(len(v) - 1)}
        xs = v if isinstance(v, (list, tuple)) else [v]
        name = (lambda i: f"[{i}]") if isinstance(v, (list, tuple)) else (lambda i: "")  # noqa: E731
        out = {}
        for i, x in enumerate(xs):
            if op in (">=", ">"):
                out[f"{name(i)}x - t"] = x - t
            elif op in ("<=", "<"):
                out[f"{name(i)}t - x"] = t - x
            elif op == "|x| <=":
                out[f"{name(i)}t - |x|"] = t - abs(x)
            elif op == "in":
                out[f"{name(i)}x - lo"], out[f"{name(i)}hi - x"] = x - t[0], t[1] - x
            else:
                raise ValueError(f"claim {self.id}: unknown comparison {op!r}")
        return out

    def band(self, v, v_twin):
        """|v - v_twin| elementwise (a number, a list or a dict of numbers); None where the shapes differ
        or the value is not numeric."""
        num = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)  # noqa: E731
        if num(v) and num(v_twin):
            return abs(v - v_twin)
        if isinstance(v, (list, tuple)) and isinstance(v_twin, (list, tuple)) and len(v) == len(v_twin) \
                and all(num(x) for x in (*v, *v_twin)):
            return [abs(a - b) for a, b in zip(v, v_twin)]
        if isinstance(v, dict) and isinstance(v_twin, dict) and set(v) == set(v_twin) \
                and all(num(x) for x in (*v.values(), *v_twin.values())):
            return {k: abs(v[k] - v_twin[k]) for k in v}
        return None

    def verdict(self, v, v_twin=None, band=None) -> str:
        """holds / does not hold / undecided. Each element of the value (or each neighbour pair of an
        order) is decided on its own: it passes or fails, or it is uncertain when it lies within its band
        of the threshold (|x - t| <= band, t the nearest bound; for |x| <= t, | |x| - t |; for an order,
        the gap between neighbours within the larger of their bands). Any decisive failure: does not
        hold; else any uncertain element, or seed twins that reach the other verdict on an order:
        undecided; else holds. ``band`` defaults to |v - v_twin|; no band: the plain comparison."""
        if band is None and v_twin is not None:
            band = self.band(v, v_twin)
        t, op = self.threshold, self.op
        if op in ("largest", "smallest"):
            b = band or {}
            ranked = sorted(v, key=v.get, reverse=op == "largest")
            other = ranked[1] if ranked[0] == t else ranked[0]  # the runner-up, or the one that beats t
            close = abs(v[t] - v[other]) <= max(b.get(t, 0.0), b.get(other, 0.0)) and max(b.values(), default=0) > 0
            if not self.decide(v):
                return "undecided" if close else "does not hold"
            flipped = v_twin is not None and band is not None and not self.decide(v_twin)
            return "undecided" if close or flipped else "holds"
        if op == "rises":
            b = band or [0.0] * len(v)
            states = []
            for i in range(len(v) - 1):
                gap, width = v[i + 1] - v[i], max(b[i], b[i + 1])
                states.append("uncertain" if width > 0 and abs(gap) <= width else ("pass" if gap > 0 else "fail"))
            flipped = v_twin is not None and band is not None and self.decide(v_twin) != self.decide(v)
            return self._combine(states, flipped)
        xs = v if isinstance(v, (list, tuple)) else [v]
        bs = band if isinstance(band, (list, tuple)) else [band or 0.0] * len(xs)

        def dist(x):
            if op == "in":
                return min(abs(x - t[0]), abs(x - t[1]))
            return abs(abs(x) - t) if op == "|x| <=" else abs(x - t)
        states = ["uncertain" if b > 0 and dist(x) <= b else ("pass" if self.decide(x) else "fail")
                  for x, b in zip(xs, bs)]
        return self._combine(states, False)

    @staticmethod
    def _combine(states: list[str], flipped: bool) -> str:
        if "fail" in states:
            return "does not hold"
        return "undecided" if flipped or "uncertain" in states else "holds"

    def check(self, metrics: dict, twin: dict | None = None) -> dict:
        """The verdict on ``metrics`` (``verdict``), with ``twin`` (``twin_metrics``: the seed twins'
        geometry and accuracy) giving each value's seed band |v - v_twin|. A claim that reads anything
        the twins do not have (connectivity, CKA, the controls) has no seed band: decided on its value.
        DPO's accuracy margin takes the larger of its seed band and its paired sampling band."""
        head = {"id": self.id, "group": self.group, "claim": self.sentence(), "paper": self.paper, "why": self.why}
        try:
            v = self.value(metrics)
        except NotMeasured as e:
            return {**head, "this_run": None, "holds": None, "verdict": "not measured", "missing": str(e)}
        out = {**head, "this_run": _r(v), "holds": bool(self.decide(v))}
        v_twin = None
        if twin is not None:
            try:
                v_twin = self.value(twin)
            except (NotMeasured, KeyError):
                v_twin = None
        band = None
        if v_twin is not None:
            out["seed_twins"] = _r(v_twin)
            # a p-value's seed "band" |p - p_twin| is a distance between two draws of a uniform: none
            band = None if self.across == "rate" else self.band(v, v_twin)
        if self.sampling_band is not None:
            try:
                sb = self.sampling_band(metrics)
            except NotMeasured:
                sb = None
            if sb is not None:
                band = sb if band is None else max(band, sb)
        out["band"] = _r(band)
        out["verdict"] = self.verdict(v, None if self.across == "rate" else v_twin, band)
        if self.seed_gate is not None:
            try:
                gated = bool(self.seed_gate(metrics))
            except NotMeasured:
                gated = False
            out["below_seed_noise"] = gated
            if gated:
                out["verdict"] = "undecided"
        return out


# ---------------------------------------------------------------- readers of the metric files
def _g(m, *keys):
    d = m["geometry"]
    for k in keys:
        if k not in d:
            raise NotMeasured(".".join(("geometry",) + keys))
        d = d[k]
    return d


def _cos(m, a, b):
    return pair(_g(m, "cosine", "global"), a, b)


def _acc(m, name: str):
    """The accuracy metrics of the set the report names ``name`` (``accuracy_set`` / ``aime_set``)."""
    s = m["sets"].get(name)
    if s is None or s not in m["accuracy"]:
        raise NotMeasured(f"no {name.replace('_', ' ')} configured (report.{name})")
    return m["accuracy"][s]


def _barrier(m, p):
    c = m["connectivity"]
    if p not in c:
        raise NotMeasured(f"connectivity pair {p} (connectivity.pairs)")
    return c[p]["barrier"]


def _lr_steps(m):
    steps = [s for s in _g(m, "lr_step").values() if math.isclose(s["lr_ratio"], 10.0)]
    if not steps:
        raise NotMeasured("no run at 10x a method's LR (controls.lr_matched / controls.lr_sweep)")
    return steps


def _lr_matched(m) -> dict:
    """The LR-matched control's geometry against every method (``geometry.lr_matched.vs``): DPO at SFT's LR."""
    lm = _g(m, "lr_matched")
    if (lm.get("method"), lm.get("lr_of")) != ("dpo", "sft"):
        raise NotMeasured("controls.lr_matched is not DPO at SFT's LR")
    return lm["vs"]


def _paired_band(m, name: str, a: str, b: str) -> float:
    """Half-width of the 95% interval of acc_a - acc_b on the same items: 1.96 sqrt(n01 + n10) / n
    (the discordant pairs carry all of a paired difference's variance; normal approximation)."""
    acc = _acc(m, name)
    p = pair(acc, a, b)
    return 1.96 * math.sqrt(p["n01"] + p["n10"]) / acc[a]["n"]


def _dpo_margin_band(m, name):
    acc = _acc(m, name)
    closest = min(FIVE, key=lambda x: acc["dpo"]["acc"] - acc[x]["acc"])
    return _paired_band(m, name, "dpo", closest)


def _dpo_better(m, name):
    acc = _acc(m, name)
    return {"dpo": acc["dpo"]["acc"], "best_other": max(acc[x]["acc"] for x in FIVE),
            "margin": min(acc["dpo"]["acc"] - acc[x]["acc"] for x in FIVE)}


def _tost_max(m):
    acc = _acc(m, "accuracy_set")
    ps = [pair(acc, a, b).get("tost_p") for i, a in enumerate(FIVE) for b in FIVE[i + 1:]]
    if None in ps:
        raise NotMeasured("tost_p (compare.margin) in the accuracy metrics")
    return max(ps)


def _dpo_holm(m):
    """Holm over the five comparisons read together; a comparison DPO loses counts as p = 1 (one-sided claim)."""
    acc = _acc(m, "accuracy_set")
    adjusted = holm([pair(acc, "dpo", x)["p"] for x in FIVE])
    return max(p if acc["dpo"]["acc"] > acc[x]["acc"] else 1.0 for p, x in zip(adjusted, FIVE))


def _online_in_noise(m) -> bool:
    """Online GRPO is at least as orthogonal to its own seed twin as to SFT: its orthogonality to SFT is
    then what two seeds of it show too, not a direction of its own."""
    return _g(m, "seeds", "grpo_online", "orthogonal_fraction") >= _g(m, "orthogonal_fraction", "direction",
                                                                       "grpo_online")


CLAIMS = [
    # (i) SFT, RFT and RIFT make one update
    Claim("family_cosine", "(i)", "global cosine SFT-RFT / SFT-RIFT / RFT-RIFT",
          lambda m: [_cos(m, a, b) for a, b in (("sft", "rft"), ("sft", "rift"), ("rft", "rift"))], ">=", 0.9,
          "0.977 / 0.967 / 0.969", why="well above the cosines the paper sets DFT and GRPO apart by (0.54-0.74)"),
    Claim("family_u1", "(i)", "mean |<u1,u1'>| within SFT/RFT/RIFT",
          lambda m: [pair(_g(m, "u1_alignment"), a, b) for a, b in (("sft", "rft"), ("sft", "rift"), ("rft", "rift"))],
          ">=", 0.9, "0.97-0.98", why="the paper's 0.97-0.98 less about 0.07; DPO's 0.11 lies far below"),
    Claim("family_v1", "(i)", "mean |<v1,v1'>| within SFT/RFT/RIFT",
          lambda m: [pair(_g(m, "v1_alignment"), a, b) for a, b in (("sft", "rft"), ("sft", "rift"), ("rft", "rift"))],
          ">=", 0.9, "0.97-0.98", why="the paper's 0.97-0.98 less about 0.07"),
    # (ii) DFT and offline GRPO move partly elsewhere
    Claim("dft_cosine", "(ii)", "global cosine SFT-DFT", lambda m: _cos(m, "sft", "dft"), "in", (0.3, 0.8), "0.572",
          why="partly aligned: 0.572 +- about 0.25, below the family's 0.9"),
    Claim("rift_dft_cosine", "(ii)", "global cosine RIFT-DFT", lambda m: _cos(m, "rift", "dft"), "in", (0.3, 0.8),
          "0.536", why="partly aligned: 0.536 +- about 0.25, below the family's 0.9"),
    Claim("grpo_cosine", "(ii)", "mean global cosine of offline GRPO to SFT/RFT/RIFT",
          lambda m: sum(_cos(m, "grpo", x) for x in FAMILY) / 3, "in", (0.5, 0.9), "about 0.74",
          why="0.74 +- about 0.2, below the family's 0.9"),
    Claim("grpo_orthogonal", "(ii)", "GRPO's orthogonal fraction off SFT (direction form, global)",
          lambda m: _g(m, "orthogonal_fraction", "direction", "grpo"), "in", (0.5, 0.8), "0.67",
          why="0.67 +- about 0.15"),
    Claim("grpo_orthogonal_depth", "(ii)", "GRPO's orthogonal fraction, late-layer mean minus mid-layer mean",
          lambda m: (_g(m, "orthogonal_fraction_depth", "grpo", "late")
                     - _g(m, "orthogonal_fraction_depth", "grpo", "mid")), ">=", 0.1,
          "0.55 mid layers to 0.79-0.86 in the last five",
          why="the paper's rise of 0.24-0.31 from mid to late layers, at least 0.1 of it"),
    # (iii) DPO is small and near-orthogonal
    Claim("dpo_orthogonal", "(iii)", "global cosine of DPO to SFT / RFT / RIFT",
          lambda m: [_cos(m, "dpo", x) for x in FAMILY], "|x| <=", 0.15, "0.057 to 0.065",
          why="near-orthogonal: the paper's 0.06 plus about 0.1"),
    Claim("dpo_small", "(iii)", "smallest non-DPO ||dW||_F divided by DPO's",
          lambda m: min(_g(m, "frobenius", x) for x in FIVE) / _g(m, "frobenius", "dpo"), "in", (6.5, 26),
          "about 13", why="a ratio 'about x' is x/2 .. 2x"),
    Claim("frobenius_range", "(iii)", "largest / smallest ||dW||_F among SFT, RFT, DFT, RIFT, GRPO",
          lambda m: max(_g(m, "frobenius", x) for x in FIVE) / min(_g(m, "frobenius", x) for x in FIVE), "<=", 1.5,
          "RFT 2.82 ... RIFT 3.04 (1.08)", why="the paper's five norms lie within 1.08x; 1.5x is a loose match"),
    Claim("dpo_u1", "(iii)", "mean |<u1,u1'>| SFT-DPO", lambda m: pair(_g(m, "u1_alignment"), "sft", "dpo"),
          "<=", 0.3, "0.11", why="the paper's 0.11 plus about 0.2, far below the family's 0.97"),
    Claim("dpo_v1", "(iii)", "mean |<v1,v1'>| SFT-DPO", lambda m: pair(_g(m, "v1_alignment"), "sft", "dpo"),
          "in", (0.5, 0.85), "0.66-0.70", why="0.66-0.70 +- about 0.15"),
    # headline geometry
    Claim("angle_order", "headline", "median top-1 principal angle to SFT of RFT, RIFT, GRPO, DFT, DPO",
          lambda m: [pair(_g(m, "angle_top1"), "sft", x)["median"] for x in ORDER], "rises", None,
          "6.7, 8.2, 18.5, 26.7, 54.6 deg", why="the paper's order; any strict rise counts"),
    Claim("angle_order_topk", "headline", "median top-k (last) principal angle to SFT of RFT, RIFT, GRPO, DFT, DPO",
          lambda m: [pair(_g(m, f"angle_top{_g(m, 'top_k')}"), "sft", x)["median"] for x in ORDER], "rises", None,
          "36, 40, 76, 85, 90 deg (10th of r=32)", why="the paper's order; any strict rise counts"),
    Claim("angle_rft", "headline", "median top-1 angle SFT-RFT (deg)",
          lambda m: pair(_g(m, "angle_top1"), "sft", "rft")["median"], "<=", 15, "6.7",
          why="about 2x the paper's 6.7 deg, below GRPO's 18.5"),
    Claim("angle_dpo", "headline", "median top-1 angle SFT-DPO (deg)",
          lambda m: pair(_g(m, "angle_top1"), "sft", "dpo")["median"], ">=", 30, "54.6",
          why="about half the paper's 54.6 deg, above DFT's 26.7"),
    Claim("effective_rank_dpo", "headline", "mean effective rank per module of the paper's six",
          lambda m: _six(_g(m, "effective_rank")), "largest", "dpo", "24.5 (DPO) vs about 16",
          why="the paper's extreme; no threshold"),
    Claim("effective_rank_grpo", "headline", "mean effective rank per module, DPO left out",
          lambda m: {k: v for k, v in _six(_g(m, "effective_rank")).items() if k != "dpo"}, "smallest", "grpo",
          "14.8 (GRPO) vs about 16", why="the paper's extreme; no threshold"),
    Claim("lmc_sft_grpo", "headline", "LMC barrier SFT <-> GRPO (nats)", lambda m: _barrier(m, "sft-grpo"), "<",
          0.05, "monotone: one basin",
          why="'one basin': a bump under 0.05 nats, about 1% of the paper's losses (2-5 nats)"),
    Claim("lmc_grpo_rift", "headline", "LMC barrier GRPO <-> RIFT (nats)", lambda m: _barrier(m, "grpo-rift"), "<",
          0.05, "monotone 4.93 -> 2.25",
          why="'one basin': a bump under 0.05 nats, about 1% of the paper's losses (2-5 nats)"),
    Claim("lmc_rift_dpo", "headline", "LMC barrier RIFT <-> DPO (nats)", lambda m: _barrier(m, "rift-dpo"), ">=",
          0.25, "3.82 -> 7.06 -> 8.64 (barrier 0.83)", why="about a third of the paper's 0.83"),
    Claim("cka_family", "headline", "late-layer linear CKA (biased, the paper's statistic) SFT-RIFT",
          lambda m: pair(m["cka"]["biased"], "sft", "rift")["late_mean"], ">=", 0.99, "above 0.99",
          why="the paper's 'above 0.99'"),
    Claim("cka_grpo", "headline", "late-layer linear CKA (biased) SFT-GRPO",
          lambda m: pair(m["cka"]["biased"], "sft", "grpo")["late_mean"], "<=", 0.95, "about 0.85",
          why="0.85 plus 0.1, below the family's 0.99"),
    Claim("cka_dpo", "headline", "late-layer linear CKA (biased) DPO-GRPO / DPO-DFT",
          lambda m: [pair(m["cka"]["biased"], "dpo", x)["late_mean"] for x in ("grpo", "dft")], "<=", 0.7,
          "about 0.45 from layer 25", why="0.45 plus 0.25, far below the family's 0.99"),
    # (iv) accuracy
    # equivalence of all ten pairs: an intersection-union test, each TOST at 5% with no multiplicity correction
    Claim("accuracy_same", "(iv)", "largest paired-TOST p of 'same accuracy within compare.margin' over the ten "
          "pairs of SFT, RFT, DFT, RIFT, GRPO", _tost_max, "<", 0.05, "McNemar p >= 0.15 (87.3-88.2%)",
          across="rate",
          why="the paper's 'same accuracy' made testable: each pair equivalent within compare.margin at 5%"),
    Claim("accuracy_dpo_margin", "(iv)", "DPO's accuracy minus the best of the other five (accuracy set)",
          lambda m: _dpo_better(m, "accuracy_set")["margin"], ">", 0, "93.5% vs 87.3-88.2%",
          lambda m: _dpo_margin_band(m, "accuracy_set"), why="the paper's direction: DPO above every other method"),
    Claim("accuracy_dpo_p", "(iv)", "largest exact-McNemar p of DPO against each of the other five, Holm-adjusted "
          "over those five (1 where DPO is not the more accurate)", _dpo_holm, "<", 0.05, "p < 1e-9", across="rate",
          why="the paper's significance at the usual 5%, Holm over the five comparisons"),
    Claim("aime_dpo", "(iv)", "DPO's AIME accuracy minus the best of the other five",
          lambda m: _dpo_better(m, "aime_set")["margin"], ">", 0, "30.0% vs 3.3-10.0% (SFT-DPO p = 0.07)",
          lambda m: _dpo_margin_band(m, "aime_set"), why="the paper's direction: DPO above every other method"),
    # online GRPO (on-policy samples, TRL's GRPOTrainer): the paper's contrast; "not measured" unless
    # grpo_online is in methods
    Claim("online_cosine", "online", "global cosine of online GRPO to SFT / RFT",
          lambda m: [_cos(m, "grpo_online", x) for x in ("sft", "rft")], "|x| <=", 0.15, "0.025 / 0.024",
          seed_gate=_online_in_noise, why="dpo_orthogonal's threshold: near-orthogonal"),
    Claim("online_orthogonal", "online", "online GRPO's orthogonal fraction off SFT (direction form, global)",
          lambda m: _g(m, "orthogonal_fraction", "direction", "grpo_online"), ">=", 0.95, "0.998",
          seed_gate=_online_in_noise, why="the paper's 0.998 less 0.05"),
    # 0.74 - 0.025 = 0.715, loosened by the cosine's 0.2 (module docstring)
    Claim("online_vs_offline", "online", "mean global cosine to SFT/RFT/RIFT, offline GRPO minus online GRPO",
          lambda m: sum(_cos(m, "grpo", x) - _cos(m, "grpo_online", x) for x in FAMILY) / 3, ">=", 0.5,
          "about 0.74 - 0.025", seed_gate=_online_in_noise, why="0.74 - 0.025 loosened by 0.2"),
    Claim("online_norm", "online", "online GRPO's ||dW||_F divided by SFT's",
          lambda m: _g(m, "frobenius", "grpo_online") / _g(m, "frobenius", "sft"), "in", (0.053, 0.21),
          "0.30 / 2.84 = 0.106", why="a ratio 'about x' is x/2 .. 2x"),
    # controls: seeds and LR
    Claim("seeds_cosine", "controls", "global cosine between a method's two seeds, each of the paper's six",
          lambda m: [v["cosine"] for v in _six(_g(m, "seeds")).values()], "<=", 0.5, "0.07-0.36",
          why="the paper's 0.07-0.36 plus about 0.15: two seeds give other deltas"),
    Claim("seeds_u1", "controls", "mean |<u1,u1'>| between a method's two seeds, each of the paper's six",
          lambda m: [v["u1_alignment"] for v in _six(_g(m, "seeds")).values()], ">=", 0.9, "0.99",
          why="the paper's 0.99 less about 0.1"),
    Claim("lmc_seeds", "controls", "LMC barrier between SFT's two seeds (nats)",
          lambda m: _barrier(m, "sft-sft_seed"), "<", 0.05, "no barrier (midpoint +0.004)",
          why="'no barrier': a bump under 0.05 nats, as the LMC claims"),
    Claim("lr_cosine", "controls", "global cosine between a method at its LR and at 10x its LR",
          lambda m: [s["cosine"] for s in _lr_steps(m)], "in", (0.35, 0.75), "about 0.55", why="0.55 +- 0.2"),
    Claim("lr_norm", "controls", "||dW|| at 10x the LR divided by ||dW|| at the method's LR",
          lambda m: [s["norm_ratio"] for s in _lr_steps(m)], "in", (1.5, 6.0), "about 3x",
          why="a ratio 'about x' is x/2 .. 2x"),
    # the control the paper leaves open (its DPO runs at a tenth of the others' LR): DPO retrained at SFT's LR
    Claim("lr_matched_orthogonal", "controls", "global cosine of DPO trained at SFT's LR (the LR-matched control) "
          "to SFT / RFT / RIFT", lambda m: [_lr_matched(m)[x]["cosine"] for x in FAMILY], "|x| <=", 0.15,
          "not run (the control the paper leaves open)",
          why="dpo_orthogonal's threshold: if DPO at SFT's LR leaves it, DPO's orthogonality is an LR effect"),
]


LEVEL = 0.95  # the replicate intervals' confidence
STABLE = (0.1, 0.9)  # a hold rate strictly between these: unstable
RULE = ("mean claims: holds when every margin's 95% t-interval of the replicate mean lies above 0, does not hold "
        "when one lies below 0, undecided otherwise; rate claims (a per-run significance test): holds when the 95% "
        "Clopper-Pearson interval of the hold rate lies above 1/2, does not hold when it lies below 1/2, undecided "
        "otherwise; unstable: a hold rate strictly between 10% and 90%")


def mean_interval(xs: list[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, lo, hi): mean +- t_{(1+level)/2, N-1} sd / sqrt(N), sd with N - 1; N = 1: the point itself."""
    n = len(xs)
    mean = sum(xs) / n
    if n < 2:
        return mean, mean, mean
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    h = student_t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - h, mean + h


def rate_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Clopper-Pearson interval of k successes in n: Beta quantiles ((1-level)/2; k, n-k+1) and
    ((1+level)/2; k+1, n-k), with 0 at k = 0 and 1 at k = n."""
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def judge(claim: Claim, values: list) -> dict:
    """The claim across replicate runs (``RULE``): ``values`` holds its value in each run (None where a run
    did not measure it; such runs are left out and counted). Returns k (runs where it holds), n, the hold rate
    with its interval, ``unstable``, each margin's mean and interval (mean claims), and the verdict."""
    got = [v for v in values if v is not None]
    out = {"id": claim.id, "across": claim.across, "n": len(got), "not_measured_in": len(values) - len(got)}
    if not got:
        return {**out, "k": 0, "verdict": "not measured"}
    k = sum(bool(claim.decide(v)) for v in got)
    lo, hi = rate_interval(k, len(got))
    out.update(k=k, hold_rate=k / len(got), hold_rate_interval=[lo, hi],
               unstable=STABLE[0] < k / len(got) < STABLE[1])
    if claim.across == "rate":
        out["verdict"] = "holds" if lo > 0.5 else "does not hold" if hi < 0.5 else "undecided"
        return out
    per_run = [claim.margins(v) for v in got]
    states, margins = [], {}
    for name in per_run[0]:
        mean, mlo, mhi = mean_interval([m[name] for m in per_run])
        margins[name] = {"mean": mean, "interval": [mlo, mhi]}
        states.append("pass" if mlo > 0 else "fail" if mhi < 0 else "uncertain")
    out["margins"] = margins
    out["verdict"] = Claim._combine(states, False)
    return out


def value_interval(values: list):
    """The replicate mean of a claim's value with its 95% interval, elementwise: (mean, lo, hi) for a number,
    a list of those for a list, a dict of those for a dict; None where no run measured it."""
    got = [v for v in values if v is not None]
    if not got:
        return None
    if isinstance(got[0], dict):
        return {key: mean_interval([v[key] for v in got]) for key in got[0]}
    if isinstance(got[0], (list, tuple)):
        return [mean_interval([v[i] for v in got]) for i in range(len(got[0]))]
    return mean_interval(got)


def twin_metrics(metrics: dict) -> dict | None:
    """The seed twins' between-method geometry (``geometry.seed_twins``) and accuracy
    (``accuracy.seed_twins``, where compare had the twins' evaluations) as a metrics dict and nothing
    else, so a claim reading anything the twins lack gets no twin value; None without twins."""
    geo = metrics.get("geometry", {})
    if "seed_twins" not in geo:
        return None
    twin = {"geometry": {**geo["seed_twins"], "top_k": geo.get("top_k")}, "sets": metrics.get("sets", {})}
    if "seed_twins" in metrics.get("accuracy", {}):
        twin["accuracy"] = metrics["accuracy"]["seed_twins"]
    return twin


def check(metrics: dict) -> list[dict]:
    """Every claim against ``metrics`` = {"geometry", "accuracy" (all sets), "connectivity", "cka",
    "sets": {"accuracy_set": name, "aime_set": name or None}}; undecided where the seed twins put a
    value within its band of the threshold (``Claim.check``)."""
    ids = [c.id for c in CLAIMS]
    if len(set(ids)) != len(ids):
        raise ValueError("claims: duplicate ids")
    twin = twin_metrics(metrics)
    return [c.check(metrics, twin) for c in CLAIMS]
