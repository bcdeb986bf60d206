"""The teacher-strength sweep, beyond the paper: how SFT-RFT agreement and the DPO pair count follow
the teacher's rollout accuracy.

Run the sweep as queued experiments, then aggregate them:

    dvc exp run --queue -S rollouts.teacher.tiny.steps=0,100,200,400
    dvc queue start -j 1            # wait for `dvc queue status` to show every run done
    python tools/teacher_sweep.py   # -> plots/teacher_sweep/sweep.csv and sweep.png (`dvc plots show`)

Every experiment (and the workspace) that ran the pipeline gives one row: the teacher's extra
pretraining steps and greedy accuracy, the rollout table's accuracy and mixed-group share, SFT-RFT
global cosine with the two methods' seed cosines beside it, and DPO's pair count (its training units).
Reads ``dvc exp show --json`` only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path


def runs(tree) -> list[dict]:
    """Every (name, params, metrics) in ``dvc exp show --json`` output, experiments and commits alike."""
    out = []

    def walk(x, name=None):
        if isinstance(x, dict):
            d = x.get("data")
            if isinstance(d, dict) and "params" in d and "metrics" in d:
                out.append({"name": x.get("name") or name or x.get("rev"), "rev": x.get("rev"),
                            "params": d["params"], "metrics": d["metrics"]})
            for k, v in x.items():
                if k != "data":
                    walk(v, x.get("name", name))
        elif isinstance(x, list):
            for v in x:
                walk(v, name)
    walk(tree)
    return out


def row(r: dict) -> dict | None:
    def get(files, path, *keys):
        d = files.get(path, {}).get("data", {})
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return None
            d = d[k]
        return d

    p, m = r["params"], r["metrics"]
    steps = get(p, "params.yaml", "rollouts", "teacher", "tiny", "steps")
    cos = get(m, "metrics/geometry.json", "cosine", "global", "sft-rft")
    if steps is None or cos is None:
        return None
    return {"run": r["name"], "teacher_steps": steps,
            "teacher_greedy_acc": get(m, "metrics/teacher.json", "heldout_acc"),
            "rollout_accuracy": get(m, "metrics/rollouts.json", "accuracy"),
            "mixed_group_share": get(m, "metrics/rollouts.json", "mixed_group_share"),
            "sft_rft_cosine": cos, "sft_seed_cosine": get(m, "metrics/geometry.json", "seeds", "sft", "cosine"),
            "rft_seed_cosine": get(m, "metrics/geometry.json", "seeds", "rft", "cosine"),
            "sft_rft_u1": get(m, "metrics/geometry.json", "u1_alignment", "sft-rft"),
            "dpo_pairs": get(m, "metrics/train/dpo.json", "units")}


def main(argv=None) -> None:
    import pandas as pd

    from weightspace.figures import PNG_META, plt

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="plots/teacher_sweep")
    ap.add_argument("--json", default=None, help="read this saved `dvc exp show --json` output instead")
    args = ap.parse_args(argv)
    text = Path(args.json).read_text() if args.json else subprocess.run(
        ["dvc", "exp", "show", "--json"], check=True, capture_output=True, text=True).stdout
    rows = [x for x in map(row, runs(json.loads(text))) if x is not None]
    if not rows:
        raise SystemExit("teacher_sweep: no experiment with the teacher's steps and a geometry metric; run the sweep")
    df = pd.DataFrame(rows).drop_duplicates(subset=[c for c in rows[0] if c != "run"])
    df = df.sort_values("rollout_accuracy")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "sweep.csv", index=False, float_format="%.6g")
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    a.plot(df["rollout_accuracy"], df["sft_rft_cosine"], "o-", label="SFT-RFT")
    a.plot(df["rollout_accuracy"], df[["sft_seed_cosine", "rft_seed_cosine"]].min(axis=1), "x--", color="grey",
           label="seed band (lower seed cosine)")
    a.set(xlabel="rollout accuracy (teacher)", ylabel="global cosine", title="SFT-RFT agreement")
    a.legend(fontsize=8)
    b.plot(df["rollout_accuracy"], df["dpo_pairs"], "s-", color="C3")
    b.set(xlabel="rollout accuracy (teacher)", ylabel="DPO pairs", title="DPO's training pairs")
    for ax, col in ((a, "sft_rft_cosine"), (b, "dpo_pairs")):
        for _, r in df.iterrows():
            ax.annotate(f"{int(r['teacher_steps'])}", (r["rollout_accuracy"], r[col]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    fig.suptitle("teacher strength (labels: teacher's extra pretraining steps)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=110, metadata=PNG_META)
    plt.close(fig)
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
