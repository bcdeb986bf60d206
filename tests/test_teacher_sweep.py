"""tools/teacher_sweep.py on a recorded `dvc exp show --json` of the README's sweep (trimmed to the
fields it reads): one row per run, sorted by rollout accuracy, and the figure."""

import subprocess
import sys

import pandas as pd

from conftest import REPO


def test_sweep_table_and_plot_from_exp_show(tmp_path):
    out = subprocess.run([sys.executable, "tools/teacher_sweep.py", "--json", "tests/data/exp_show_teacher_sweep.json",
                          "--out", str(tmp_path)], cwd=REPO, check=True, capture_output=True, text=True).stdout
    df = pd.read_csv(tmp_path / "sweep.csv")
    assert df["teacher_steps"].tolist() == [100, 200, 400]  # sorted by rollout accuracy, which rises with them
    assert df["rollout_accuracy"].is_monotonic_increasing and df["dpo_pairs"].tolist() == [65, 96, 76]
    assert df["sft_rft_cosine"].round(4).tolist() == [0.9353, 0.9364, 0.9763]
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG" and "workspace" in out
    # the committed table is this one
    assert (REPO / "plots/teacher_sweep/sweep.csv").read_text() == (tmp_path / "sweep.csv").read_text()
