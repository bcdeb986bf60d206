"""Stage deltas@<method>: a PEFT adapter -> its per-module factors (A, B, scale, layer, projection) in
``<out>`` (safetensors, float64); the geometry reads only these. Params: none."""

from __future__ import annotations

import logging

from ..adapters import frobenius, read_adapter, write_deltas
from .common import parse

log = logging.getLogger(__name__)


def main(argv=None) -> None:
    args, _ = parse(__doc__, {"adapter": "PEFT adapter folder", "out": "deltas file"}, argv)
    factors = read_adapter(args.adapter)
    write_deltas(args.out, factors)
    log.info("deltas: %d modules, ||Delta W||_F = %.6g", len(factors), frobenius(factors))


if __name__ == "__main__":
    main()
