"""The real stages on the plumbing profile (profiles/plumbing.yaml: the whole stage graph, small), run by
`dvc repro` in a temporary copy of the repository (the session fixture ``plumbing`` in conftest.py): what re-runs
after an edit or `-S`, kills and resumes, the README's `dvc exp run` commands and queue, remotes, the reproduction
check, benchmark smoke-runs. Each asserts behaviour, not only that files exist. Sizes and step counts are read
from the run's params, never written here. What the tiny default measures (its regime, its claims) is tested on a
run of the default itself: test_science.py (full tier) and test_regime.py (the committed metrics)."""

from __future__ import annotations

import json
import math
import re

import pytest

from conftest import REPO, run
from weightspace import config
from weightspace.data.rollouts import load_table

PAPER_SIX = ("sft", "rft", "dft", "rift", "grpo", "dpo")


def params_of(root) -> config.Params:
    return config.load(root / "params.yaml")


def stale_stages(root, tmp) -> set[str]:
    """The stages `dvc status` reports changed (empty when everything is up to date)."""
    return set(json.loads(run(["dvc", "status", "--json"], root, tmp).stdout or "{}"))


def committed_copy(root, dst):
    """A copy of the fixture's repo with its run committed, so `--against HEAD` and `dvc exp run` start from it."""
    import shutil
    import subprocess

    shutil.copytree(root, dst, symlinks=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(["git", "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-qm", "the fixture's run"], cwd=dst, check=True)
    return dst


def ran_stages(stdout: str) -> set[str]:
    """The stages a `dvc repro` / `dvc exp run` ran, or restored from DVC's run cache."""
    return {line.split("'")[1] for line in stdout.splitlines()
            if line.startswith("Running stage") or (line.startswith("Stage '") and "is cached" in line)}


def test_dvc_status_clean_after_repro(plumbing):
    root, tmp = plumbing
    assert stale_stages(root, tmp) == set()


def test_base_is_a_qwen3_of_the_configured_shape(plumbing):
    from safetensors.torch import load_file

    root, _ = plumbing
    tiny = params_of(root).base.tiny
    cfg = json.loads((root / "models/base/config.json").read_text())
    assert cfg["architectures"] == ["Qwen3ForCausalLM"]
    assert (cfg["num_hidden_layers"], cfg["hidden_size"]) == (tiny.layers, tiny.hidden_size)
    weights = load_file(root / "models/base/model.safetensors")
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert sum(k.endswith(f"self_attn.{proj}.weight") for k in weights) == tiny.layers
    m = json.loads((root / "metrics/base.json").read_text())
    assert m["steps"] == tiny.steps and m["heldout_n"] == tiny.eval_n


def test_rollout_table_has_every_row_and_the_graders_labels(plumbing):
    from weightspace.data.grading import is_correct

    root, _ = plumbing
    p = params_of(root)
    rows = load_table(root / "data/rollouts.jsonl")
    m = json.loads((root / "metrics/rollouts.json").read_text())
    policy = m["policy"]  # the teacher output policy (rollouts.reasoning, rollouts.overlong) and its counts
    assert (policy["reasoning"], policy["overlong"], policy["max_length"]) == (
        p.rollouts.reasoning, p.rollouts.overlong, p.train.max_length)
    assert policy["reasoning_kept"] == policy["reasoning_dropped"] == 0  # the tiny teacher writes no reasoning
    assert len(rows) == m["rows"] == p.prepare.train.n * p.rollouts.k + p.rollouts.gold_rows - policy["rows_dropped"]
    assert m["accuracy"] == pytest.approx(sum(r["reward"] for r in rows) / len(rows))
    assert sum(r["source"] == "gold" for r in rows) == m["gold_rows"] == p.rollouts.gold_rows
    assert all(r["reward"] == is_correct(r["completion"], r["gold"]) for r in rows)  # the grader's labels


def test_rollouts_are_byte_identical_on_rerun_and_from_the_journal(plumbing):
    root, tmp = plumbing

    def rollouts(journal, out):
        return run(["python", "-m", "weightspace.stages.rollouts", "--data", "data/prepared", "--teacher", "models/teacher",
                    "--base", "models/base", "--out", str(tmp / out), "--metrics", str(tmp / f"{out}.json"),
                    "--journal", str(tmp / journal)], root, tmp)

    rollouts("fresh.journal", "again.jsonl")  # a fresh journal: everything generated again
    assert (tmp / "again.jsonl").read_bytes() == (root / "data/rollouts.jsonl").read_bytes()
    rollouts("fresh.journal", "reused.jsonl")  # the same journal: nothing generated, the same table
    assert (tmp / "reused.jsonl").read_bytes() == (root / "data/rollouts.jsonl").read_bytes()
    g = json.loads((tmp / "reused.jsonl.json").read_text())["generation"]
    assert g["reused_from_journal"] == g["units"] and g["generated"] == 0


def train_cmd(method: str, out, tmp, params="params.yaml") -> list[str]:
    return ["-m", "weightspace.stages.train", "--params", str(params), "--method", method, "--base", "models/base",
            "--init", "models/init", "--rollouts", "data/rollouts.jsonl", "--out", str(out),
            "--deltas", str(tmp / f"{out.name}.safetensors"), "--metrics", str(tmp / f"{out.name}.json"),
            "--plots", str(tmp / f"{out.name}-plots")]


def test_six_adapters_share_one_init_and_load_in_peft(plumbing):
    import torch
    from peft import PeftModel

    from weightspace.model.adapters import read_adapter
    from weightspace.model.models import load_base
    from weightspace.train.training import lora_sha256

    root, _ = plumbing
    p = params_of(root)
    base, _ = load_base(root / "models/base")
    init_sha = lora_sha256(PeftModel.from_pretrained(base, root / "models/init"))
    modules = p.base.tiny.layers * len(p.train.lora.target_modules)
    for m in p.methods:
        metrics = json.loads((root / f"metrics/train/{m}.json").read_text())
        assert metrics["init_sha256"] == init_sha, f"{m} did not start from models/init"
        assert metrics["modules"] == modules and metrics["steps"] == p.train.steps and metrics["units"] > 0
        assert len(read_adapter(root / f"models/{m}")) == modules and metrics["delta_frobenius"] > 0
        assert len((root / f"plots/train/{m}/plots/metrics/loss.tsv").read_text().splitlines()) == 1 + p.train.steps
    base, _ = load_base(root / "models/base")
    PeftModel.from_pretrained(base, root / "models/dpo")  # loads as a PEFT adapter
    init = read_adapter(root / "models/init")
    assert all(torch.count_nonzero(f.B) == 0 for f in init.values())  # Delta W starts at zero


def kill_when(cmd: list[str], cwd, tmp, curve, lines: int, timeout_s: float) -> None:
    """Start ``cmd`` and SIGKILL it once its ``curve`` file has more than ``lines`` lines (or after
    ``timeout_s``)."""
    import signal
    import subprocess
    import time

    from conftest import env

    p = subprocess.Popen(cmd, cwd=cwd, env=env(tmp, cwd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout_s
    while time.time() < deadline and not (curve.exists() and len(curve.read_text().splitlines()) > lines):
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()


def long_params(root, tmp, steps: int, every: int):
    """The run's params with ``steps`` training steps and a checkpoint every ``every``: long enough for a kill to
    land between two checkpoints (the plumbing profile's own run takes a fraction of a second)."""
    text = (root / "params.yaml").read_text()
    p = params_of(root).train
    text = text.replace(f"\n  steps: {p.steps}\n", f"\n  steps: {steps}\n", 1)
    text = re.sub(r"\n  checkpoint_every: \d+", f"\n  checkpoint_every: {every}", text, count=1)
    path = tmp / f"params-{steps}-steps.yaml"
    path.write_text(text)
    written = config.load(path).train
    assert (written.steps, written.checkpoint_every) == (steps, every)
    return path


@pytest.mark.slow
def test_training_killed_between_checkpoints_resumes_to_the_same_bytes(plumbing):
    """SIGKILL at a step between checkpoints: the re-run resumes from the last checkpoint, runs only the remaining
    steps, and writes the adapter of an uninterrupted run, byte for byte."""
    root, tmp = plumbing
    steps, every = 60, 10
    params = long_params(root, tmp, steps, every)
    whole = tmp / "whole"
    run(["python", *train_cmd("sft", whole, tmp, params)], root, tmp)
    ref = {f.name: f.read_bytes() for f in whole.iterdir()}
    out = tmp / "killed"
    curve = tmp / "killed-plots/plots/metrics/loss.tsv"
    kill_when(["python", *train_cmd("sft", out, tmp, params)], root, tmp, curve, 25, 120)
    assert not out.exists()  # a killed run leaves no adapter behind
    ckpts = [d.name for d in (tmp / ".checkpoints/killed").iterdir() if d.name.startswith("step-")]
    assert len(ckpts) == 1 and 20 <= int(ckpts[0].split("-")[1]) < steps, ckpts
    done = int(ckpts[0].split("-")[1])
    r = run(["python", *train_cmd("sft", out, tmp, params)], root, tmp)  # another process: another hash seed
    assert f"step {done} done, running steps {done + 1}.." in r.stderr
    assert json.loads((tmp / "killed.json").read_text())["resumed_from_step"] == done
    assert {f.name: f.read_bytes() for f in out.iterdir()} == ref  # every file, the config included
    assert (tmp / "killed.safetensors").read_bytes() == (tmp / "whole.safetensors").read_bytes()
    assert len(curve.read_text().splitlines()) == 1 + steps  # the curve is whole: replayed, then continued
    assert not (tmp / ".checkpoints/killed").exists()  # cleared once the run completed


def test_changing_dpo_lr_makes_only_the_dpo_branch_stale(plumbing):
    """`dvc exp run -S dpo.lr=...` re-runs the DPO branch and what depends on it, nothing else: `dvc status`
    after the edit names exactly the stages that read `dpo` (the other aggregates follow once their inputs
    change)."""
    import shutil

    root, tmp = plumbing
    params = root / "params.yaml"
    saved = params.read_text()
    try:
        params.write_text(saved.replace("dpo:\n  lr: 1.0e-5", "dpo:\n  lr: 1e-04"))
        assert params.read_text() != saved
        # the DPO branches, and the geometry, which reads dpo.lr for the LR-matched control's LR ratio
        assert stale_stages(root, tmp) == {"train@dpo", "train_lr_matched", "lr_sweep@dpo", "geometry"}
    finally:
        params.write_text(saved)
        shutil.rmtree(tmp / ".dvc-site-cache", ignore_errors=True)
    assert stale_stages(root, tmp) == set()


@pytest.mark.parametrize("path, old, new, want", [
    # a figure's style: only the figures stage (the compute stages draw nothing)
    ("src/weightspace/figures.py", 'color="#4c72b0"', 'color="#dd8452"', {"figures"}),
    # a connectivity pair added in params: connectivity re-runs, and its deps already cover dft's deltas
    ("params.yaml", "    - sft-sft_seed ", "    - dft-dpo\n    - sft-sft_seed ", {"connectivity"}),
])
def test_an_edit_reruns_only_the_stage_that_reads_it(plumbing, path, old, new, want):
    import shutil

    root, tmp = plumbing
    f = root / path
    saved = f.read_text()
    try:
        assert old in saved
        f.write_text(saved.replace(old, new, 1))
        assert stale_stages(root, tmp) == want
    finally:
        f.write_text(saved)
        shutil.rmtree(tmp / ".dvc-site-cache", ignore_errors=True)
    assert stale_stages(root, tmp) == set()


def test_the_aggregate_stages_name_no_method():
    """No stage command or dependency hard-codes a method (or a pair of them): the aggregate stages read
    ``methods`` and ``connectivity.pairs`` from params and depend on whole folders."""
    import yaml

    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    names = "|".join(config.METHODS)
    for name, st in pipeline["stages"].items():
        text = json.dumps({k: st.get(k) for k in ("cmd", "deps", "outs")})
        assert not re.search(rf"[/ ,=]({names})([.,/ \"]|_seed|$)", text), (name, text)
    # nor does a plot: no file, column or title names a method or an a-b pair of them
    plots = json.dumps(pipeline["plots"])
    assert not re.search(rf"[\"/ ]({names})(_seed)?([-\"./ ]|$)", plots), plots


@pytest.mark.slow
def test_two_processes_match_one_within_tolerance(plumbing):
    """accelerate launch, 2 CPU processes over gloo, each taking half of every effective batch."""
    from weightspace.model.adapters import read_adapter
    from weightspace.weights.geometry import cosine

    root, tmp = plumbing
    params = tmp / "params-1thread.yaml"
    params.write_text((root / "params.yaml").read_text().replace("\nthreads: 2", "\nthreads: 1"))
    out = tmp / "ddp"
    run(["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
         "no", "--dynamo_backend", "no", *train_cmd("sft", out, tmp, params)], root, tmp)
    assert json.loads((tmp / "ddp.json").read_text())["processes"] == 2
    one, two = read_adapter(root / "models/sft"), read_adapter(out)
    scale = max(f.B.abs().max().item() for f in one.values())
    diff = max(max((one[k].B - two[k].B).abs().max().item(), (one[k].A - two[k].A).abs().max().item()) for k in one)
    # stated tolerance: float32 gradients summed in another order, amplified by Adam
    assert diff <= 1e-3 * scale, (diff, scale)  # entries within 0.1% of the largest |B|
    assert cosine(list(one.values()), list(two.values())) > 0.99999


# lr_sweep: off in the profiles
LIGHT = ("prepare", "alignment@sft", "geometry", "compare", "figures", "report", "lr_sweep@sft")
HEAVY_IMPORTS = {"transformers", "peft", "trl", "accelerate", "vllm"}


def test_light_stages_import_neither_transformers_nor_peft(plumbing, tmp_path):
    """A stage pays for what it uses: the stages that only read and write numbers, files and figures (and the LR
    sweep when it is off) run their locked commands (in a copy) under `python -X importtime`, and none of them
    imports transformers, peft, trl, accelerate or vLLM (several seconds of start-up each); cka, which runs the
    model, imports transformers (the check can fail)."""
    import shlex

    import yaml

    root, tmp = plumbing
    exp = committed_copy(root, tmp_path / "light")
    lock = yaml.safe_load((exp / "dvc.lock").read_text())["stages"]
    assert params_of(exp).controls.lr_sweep == ()

    def imported(stage: str) -> set[str]:
        cmd = shlex.split(lock[stage]["cmd"])
        assert cmd[:2] == ["python", "-m"], cmd
        err = run(["python", "-X", "importtime", *cmd[1:]], exp, tmp).stderr
        return {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in err.splitlines()
                if line.startswith("import time:")}

    for stage in LIGHT:
        mods = imported(stage)
        assert "weightspace" in mods and not mods & HEAVY_IMPORTS, (stage, sorted(mods & HEAVY_IMPORTS))
    assert "transformers" in imported("cka")


def test_geometry_metrics_match_the_adapters(plumbing):
    """metrics/geometry.json agrees with a dense recomputation from the PEFT adapters themselves."""
    import itertools

    import torch

    from weightspace.model.adapters import read_adapter

    root, _ = plumbing
    p = params_of(root)
    g = json.loads((root / "metrics/geometry.json").read_text())
    assert set(g["cosine"]["global"]) == {f"{a}-{b}" for a, b in itertools.combinations(p.methods, 2)}
    assert g["top_k"] == p.geometry.top_k
    dense = {}
    for m in ("sft", "dpo"):
        dense[m] = torch.cat([(f.scale * f.B @ f.A).flatten() for f in read_adapter(root / f"models/{m}").values()])
    want = (dense["sft"] @ dense["dpo"] / (dense["sft"].norm() * dense["dpo"].norm())).item()
    assert abs(g["cosine"]["global"]["sft-dpo"] - want) < 1e-10
    assert abs(g["frobenius"]["dpo"] - dense["dpo"].norm().item()) < 1e-10
    for name in ("cosine_matrix", "angle_top1_matrix", "cosine_per_layer", "orthogonal_fraction_per_layer"):
        assert (root / f"plots/figures/geometry/{name}.png").read_bytes()[:4] == b"\x89PNG"
    rows = (root / "plots/geometry/cosine_per_layer.csv").read_text().splitlines()
    assert rows[0].startswith("layer,sft-rft") and len(rows) == 1 + p.base.tiny.layers


def test_claims_report_lists_every_claim(plumbing):
    from weightspace.report.claims import CLAIMS

    root, _ = plumbing
    claims = json.loads((root / "metrics/claims.json").read_text())
    assert set(claims["claims"]) == {c.id for c in CLAIMS} and claims["profile"] == params_of(root).profile
    md = (root / "metrics/report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == [c.id for c in CLAIMS]
    for line in rows:  # each row has exactly 7 cells (the threshold's reason among them): escaped pipes do not split
        assert len(line.replace("\\|", "").strip("|").split("|")) == 7, line
    # the committed replicate file is the tiny default's: this profile's counts are its one run's
    assert claims["counted_over_runs"] == 1 and "made for profile 'tiny'" in claims["counted_by"]
    assert "seed band" in md and "RIFT form: `token`" in md and "CKA layers" in md
    assert claims["not_measured"] == sum(c["verdict"] == "not measured" for c in claims["claims"].values())
    assert sum(claims[k] for k in ("holds", "does_not_hold", "undecided", "not_measured")) == len(CLAIMS)
    # the profile measures every claim but the AIME one (it has no AIME set) and online GRPO's (opt-in)
    assert {k for k, c in claims["claims"].items() if c["holds"] is None} == {
        "aime_dpo", "online_cosine", "online_orthogonal", "online_vs_offline", "online_norm"}
    assert "![geometry/cosine_matrix.png](../plots/figures/geometry/cosine_matrix.png)" in md


TEN = (*PAPER_SIX, "ipo", "simpo", "kto", "grpo_online")


@pytest.mark.slow
def test_the_extra_losses_and_online_grpo_with_one_command_and_a_killed_online_run_reruns_to_the_same_bytes(
        plumbing, tmp_path):
    """The README's two method experiments as one run (`dvc exp run -S 'methods=[...]'` with the three extra
    preference losses and online GRPO together: each command's check below is that command's): they train from
    the shared init, the paper's six are not retrained, and geometry (with the orthogonal fraction off offline
    GRPO), accuracy, the connectivity pair grpo_online-grpo, the online claims, curves, figures and report cover
    them with no file edited. Then the online run, SIGKILLed midway and run again, writes the same adapter bytes
    (TRL keeps no checkpoints: it starts again from step 0, its sampling seeded). Online GRPO runs 40 steps here
    (`-S grpo_online.steps=40`) so that the kill lands midway."""
    import csv

    root, tmp = plumbing
    exp = committed_copy(root, tmp_path / "ten")
    steps = 40
    out = run(["dvc", "exp", "run", "-S", f"methods=[{','.join(TEN)}]", "-S", f"grpo_online.steps={steps}"],
              exp, tmp).stdout
    new = {f"{s}@{m}" for s in ("train", "alignment", "lr_sweep", "evaluate") for m in TEN[6:]}
    assert ran_stages(out) == new | {"geometry", "compare", "connectivity", "cka", "figures", "report"}, out
    init = json.loads((root / "metrics/train/sft.json").read_text())["init_sha256"]
    for m in TEN[6:]:
        t = json.loads((exp / f"metrics/train/{m}.json").read_text())
        twin = json.loads((exp / f"metrics/train/seeds/{m}.json").read_text())
        assert t["init_sha256"] == init != twin["init_sha256"] and t["delta_frobenius"] > 0 and t["method"] == m
    t = json.loads((exp / "metrics/train/grpo_online.json").read_text())
    assert (t["steps"], t["seed"]) == (steps, 42)
    with (exp / "plots/train/grpo_online/plots/metrics/reward.tsv").open() as f:
        rewards = [float(r["reward"]) for r in csv.DictReader(f, delimiter="\t")]
    k = max(1, steps // 10)
    assert len(rewards) == steps and t["reward_last_tenth"] == pytest.approx(sum(rewards[-k:]) / k)
    g = json.loads((exp / "metrics/geometry.json").read_text())
    assert set(g["frobenius"]) == set(TEN) and set(g["seeds"]) == set(TEN) and "grpo-grpo_online" in g["cosine"]["global"]
    assert set(g["orthogonal_fraction"]["direction_off_offline"]) == {"grpo_online"}
    assert set(g["seed_twins"]["orthogonal_fraction"]["direction_off_offline"]) == {"grpo_online"}
    assert "grpo_online-grpo" in json.loads((exp / "metrics/connectivity.json").read_text())
    acc = json.loads((exp / "metrics/accuracy.json").read_text())
    assert {"base", *TEN} <= set(acc[params_of(exp).report.accuracy_set])
    claims = json.loads((exp / "metrics/claims.json").read_text())["claims"]
    assert all(claims[k]["verdict"] != "not measured" and "seed_twins" in claims[k]
               for k in ("online_cosine", "online_orthogonal", "online_vs_offline", "online_norm"))
    md = (exp / "metrics/report.md").read_text()
    assert all(f"\n| {m} | " in md for m in TEN)
    assert "## Online vs offline: grpo_online (on-policy samples) against sft and grpo (the table)" in md
    with (exp / "plots/series/training_loss.csv").open() as f:
        assert {r["series"] for r in csv.DictReader(f)} == set(TEN)
    with (exp / "plots/series/online.csv").open() as f:
        series = [r["series"] for r in csv.DictReader(f)]
    assert {s: series.count(s) for s in set(series)} == {"grpo_online reward": steps,
                                                         "grpo_online completion_length": steps}
    assert (exp / "plots/figures/geometry/cosine_matrix.png").read_bytes()[:4] == b"\x89PNG"
    # killed midway, then run again: the same adapter, byte for byte, as the experiment's
    ref = {f.name: f.read_bytes() for f in (exp / "models/grpo_online").iterdir()}
    killed = tmp_path / "killed"
    curve = tmp_path / "killed-plots/plots/metrics/reward.tsv"
    kill_when(["python", *train_cmd("grpo_online", killed, tmp_path)], exp, tmp, curve, steps // 4, 300)
    assert curve.exists() and not killed.exists()  # it was killed midway and left no adapter behind
    run(["python", *train_cmd("grpo_online", killed, tmp_path)], exp, tmp)
    assert {f.name: f.read_bytes() for f in killed.iterdir()} == ref
    assert len(curve.read_text().splitlines()) == 1 + steps


@pytest.mark.slow
def test_lr_control_and_queued_grid_as_the_readme_says(plumbing, tmp_path):
    """The README's experiments, for real: `dvc exp run -S dpo.lr=...` (the other methods' LR), then
    `dvc metrics diff` / `dvc params diff` / `dvc plots diff`, then a queued grid run by one worker."""
    import subprocess
    import time

    root, tmp = plumbing
    exp = committed_copy(root, tmp_path / "exp")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    sft_lr = params_of(root).method("sft").lr
    out = run(["dvc", "exp", "run", "-S", f"dpo.lr={sft_lr}"], exp, tmp).stdout
    # compare re-runs only where DPO's greedy answers changed (on the plumbing run they may not)
    must = {"train@dpo", "alignment@dpo", "train_lr_matched", "lr_sweep@dpo", "evaluate@dpo", "geometry",
            "connectivity", "cka", "figures", "report"}
    assert must <= ran_stages(out) <= must | {"compare"}, out
    before = json.loads((root / "metrics/train/dpo.json").read_text())
    after = json.loads((exp / "metrics/train/dpo.json").read_text())
    assert after["lr"] == sft_lr and before["lr"] == params_of(root).method("dpo").lr == sft_lr / 10
    assert after["delta_frobenius"] > 2 * before["delta_frobenius"]  # 10x the LR moves the weights further
    subprocess.run(["git", "add", "-A"], cwd=exp, check=True)
    subprocess.run([*git, "commit", "-qm", "LR-matched DPO"], cwd=exp, check=True)
    diff = run(["dvc", "metrics", "diff", "HEAD~1", "--md"], exp, tmp).stdout
    assert "metrics/train/dpo.json" in diff and "delta_frobenius" in diff and "cosine.global.sft-dpo" in diff
    assert "dpo.lr" in run(["dvc", "params", "diff", "HEAD~1"], exp, tmp).stdout
    assert "delta_frobenius" in run(["dvc", "metrics", "show"], exp, tmp).stdout
    run(["dvc", "plots", "diff", "HEAD~1", "-o", str(tmp_path / "plots-diff")], exp, tmp)
    html = (tmp_path / "plots-diff/index.html").read_text()
    assert "vegaEmbed(" in html and "cdn.jsdelivr" not in html

    run(["dvc", "exp", "run", "--queue", "-S", "dpo.lr=3e-5,3e-4"], exp, tmp)
    run(["dvc", "queue", "start", "-j", "1"], exp, tmp)
    deadline = time.time() + 600
    status = ""
    while time.time() < deadline:
        time.sleep(5)
        status = run(["dvc", "queue", "status"], exp, tmp).stdout
        if "Running" not in status and "Queued" not in status:
            break
    assert "Failed" not in status and status.count("Success") == 2, status
    shown = run(["dvc", "exp", "show", "--csv"], exp, tmp).stdout
    assert "3e-05" in shown and "0.0003" in shown, shown
    assert "dpo.lr" in run(["dvc", "exp", "show", "--only-changed", "--no-pager", "--md"], exp, tmp).stdout


def test_profile_switch_shows_in_params_diff(tmp_path):
    from conftest import copy_repo

    root = copy_repo(tmp_path / "p")
    run(["make", "profile-paper"], root, tmp_path)
    assert (root / "params.yaml").read_text() == (root / "profiles/paper.yaml").read_text()
    diff = run(["dvc", "params", "diff", "--md"], root, tmp_path).stdout
    assert "| params.yaml | profile" in diff and "tiny" in diff and "paper" in diff, diff


def test_default_local_remote_push_and_pull(plumbing):
    """`dvc push` / `dvc pull` work out of the box: the default remote is a folder beside the repo."""
    from conftest import fresh_clone

    root, tmp = plumbing
    run(["dvc", "push"], root, tmp)
    storage = root.parent / "weightspace-dvc-storage"
    assert storage.is_dir() and any(storage.rglob("*"))
    clone = fresh_clone(root, tmp / "clone-local")  # beside the repo copy: the same ../weightspace-dvc-storage
    assert not (clone / "models/sft").exists()
    run(["dvc", "pull", "train@sft"], clone, tmp)
    assert (clone / "models/sft/adapter_model.safetensors").read_bytes() == (
        root / "models/sft/adapter_model.safetensors").read_bytes()
    assert not (clone / "models/dpo").exists()  # one stage's outputs, nothing else


def test_every_method_has_a_second_seed_and_the_lr_matched_control(plumbing):
    import torch

    from weightspace.model.adapters import read_adapter
    from weightspace.train.training import snapshot_steps

    root, _ = plumbing
    p = params_of(root)
    g = json.loads((root / "metrics/geometry.json").read_text())
    assert set(g["seeds"]) == set(p.methods) and g["noise_floor"]["method"] == p.geometry.reference

    def dense(path):
        return torch.cat([(f.scale * f.B @ f.A).flatten() for f in read_adapter(path).values()])

    for m in p.methods:
        main = json.loads((root / f"metrics/train/{m}.json").read_text())
        twin = json.loads((root / f"metrics/train/seeds/{m}.json").read_text())
        assert twin["init_sha256"] != main["init_sha256"] and twin["method"] == m and twin["lr"] == main["lr"]
        a, b = dense(root / f"models/{m}"), dense(root / f"models/seeds/{m}")
        assert abs(g["seeds"][m]["cosine"] - (a @ b / (a.norm() * b.norm())).item()) < 1e-10
        assert g["seeds"][m]["seeds"] == [p.train.seed, p.controls.seed]
        curve = (root / f"plots/alignment/{m}.csv").read_text().splitlines()
        assert curve[0] == "step,u1_alignment,v1_alignment,angle_u1_median,cosine"
        assert [int(line.split(",")[0]) for line in curve[1:]] == snapshot_steps(p.train)
        last = dict(zip(curve[0].split(","), map(float, curve[-1].split(","))))
        assert abs(last["u1_alignment"] - g["seeds"][m]["u1_alignment"]) < 1e-9
        assert abs(last["cosine"] - g["seeds"][m]["cosine"]) < 1e-9
    c = p.controls.lr_matched
    lm = json.loads((root / "metrics/train/lr_matched.json").read_text())
    assert (lm["method"], lm["lr"], lm["lr_of"]) == (c.method, p.method(c.lr_of).lr, c.lr_of)
    assert lm["init_sha256"] == json.loads((root / f"metrics/train/{c.method}.json").read_text())["init_sha256"]
    step = g["lr_step"]["lr_matched"]
    a, b = dense(root / f"models/{c.method}"), dense(root / "models/controls/lr_matched")
    assert step["lr_ratio"] == pytest.approx(p.method(c.lr_of).lr / p.method(c.method).lr)
    assert step["norm_ratio"] == pytest.approx((b.norm() / a.norm()).item())
    for m in p.methods:
        assert json.loads((root / f"metrics/train/lr_sweep/{m}.json").read_text()) == {"method": m, "lrs": [], "runs": {}}
    conn = json.loads((root / "metrics/connectivity.json").read_text())
    assert set(p.connectivity_pairs()) <= set(conn) and {"grpo-rift", "sft-sft_seed"} <= set(conn)


# each benchmark, shrunk: its arguments, and a line that shows its baseline ran (a positive number on it)
BENCHMARKS = [
    ("benchmarks/generation.py", ["--prompts", "8", "--batch", "8"], r"^batch 1:"),
    ("benchmarks/train_throughput.py", ["--steps", "3", "--batch", "8"], r"TRL SFTTrainer"),
    ("benchmarks/geometry_scale.py", ["--layers", "1", "--sample", "1"], r"dense"),
    ("benchmarks/grading.py", ["--rows", "200", "--processes", "2"], r"one process"),
    ("benchmarks/gpu_plan.py", ["--steps", "1", "--batch", "4", "--micro", "2", "--micro-nogc", "2"], r"padded"),
    ("benchmarks/connectivity.py", ["--n", "8", "--batch", "8", "--repeats", "1"], r"plain forward"),
    ("benchmarks/logprob_memory.py", ["--length", "64"], r"full-vocabulary"),
    ("benchmarks/w0_scale.py", ["--layers", "1", "--adapters", "3", "--sample", "1", "--sample-adapters", "1"],
     r"full \(exact"),
    ("benchmarks/dvc_noop.py", ["--repeats", "1"], r"floor"),  # in the run's up-to-date copy: fails if a stage runs
]
RATIO = re.compile(r"ratio[^:\n]*?:? ([-+0-9.eE]+|nan|inf)x")  # "ratio a / b: 1.3x", "ratio a / b 95x", "ratio 1.3x"


@pytest.mark.slow
@pytest.mark.parametrize("script, args, baseline", BENCHMARKS, ids=[b[0].split("/")[1] for b in BENCHMARKS])
def test_benchmarks_run_and_print_a_ratio(plumbing, script, args, baseline):
    """The README's benchmark commands, shrunk: each prints at least one ratio against a baseline measured in
    the same run, every ratio finite and positive, and a line of its baseline with a positive figure."""
    root, tmp = plumbing
    out = run(["python", script, *args], root, tmp).stdout
    ratios = [float(x) for x in RATIO.findall(out)]
    assert ratios and all(math.isfinite(x) and x > 0 for x in ratios), out
    lines = [line.split("ratio")[0] for line in out.splitlines() if re.search(baseline, line)]
    figures = [float(x) for line in lines for x in re.findall(r"(?<![\w.])(\d+\.?\d*)(?![\w.])", line)]
    assert any(x > 0 for x in figures), (baseline, out)


@pytest.mark.slow
def test_lr_sweep_trains_a_method_at_each_learning_rate_and_geometry_reads_it(plumbing):
    """controls.lr_sweep on, the grid [10x SFT's LR, DPO's LR]: lr_sweep@sft trains SFT at both, lr_sweep@dpo only
    at the first (the second is its own LR: its main run, train@dpo); the geometry's lr_step has each run against
    the same method at its own LR, with the ratio of the two LRs."""
    root, tmp = plumbing
    params = tmp / "params-sweep.yaml"
    own = {m: json.loads((root / f"metrics/train/{m}.json").read_text())["lr"] for m in ("sft", "dpo")}
    grid = [10 * own["sft"], own["dpo"]]
    # written as 1.0e-03: YAML 1.1 (PyYAML) reads a float without a dot as a string
    params.write_text((root / "params.yaml").read_text().replace("  lr_sweep: []",
                                                                 f"  lr_sweep: [{grid[0]:.1e}, {grid[1]:.1e}]"))
    sweep = tmp / "lr_sweep"
    want = {"sft": grid, "dpo": [grid[0]]}
    for m, lrs in want.items():
        run(["python", "-m", "weightspace.stages.lr_sweep", "--params", str(params), "--method", m, "--base",
             "models/base", "--init", "models/init", "--rollouts", "data/rollouts.jsonl", "--out", str(sweep / m),
             "--metrics", str(tmp / f"sweep-{m}.json")], root, tmp)
        metrics = json.loads((tmp / f"sweep-{m}.json").read_text())
        assert metrics["lrs"] == pytest.approx(lrs)
        assert set(metrics["runs"]) == {f"{m}_lr{lr:g}" for lr in lrs}
        for lr in lrs:
            name = f"{m}_lr{lr:g}"
            assert metrics["runs"][name]["lr"] == pytest.approx(lr)
            assert metrics["runs"][name]["steps"] == params_of(root).train.steps
            assert (sweep / m / f"{name}.safetensors").is_file() and (sweep / m / name / "adapter_config.json").is_file()
    run(["python", "-m", "weightspace.stages.geometry", "--params", str(params), "--base", "models/base",
         "--deltas", "models/deltas", "--seed_deltas", "models/deltas/seeds", "--lr_matched",
         "models/deltas/controls/lr_matched.safetensors",
         "--lr_sweep", str(sweep), "--metrics", str(tmp / "geo.json"), "--plots", str(tmp / "geo-plots")], root, tmp)
    steps = json.loads((tmp / "geo.json").read_text())["lr_step"]
    assert set(steps) == {"lr_matched"} | {f"{m}_lr{lr:g}" for m, lrs in want.items() for lr in lrs}
    for m, lrs in want.items():
        for lr in lrs:
            assert steps[f"{m}_lr{lr:g}"]["lr_ratio"] == pytest.approx(lr / own[m])


CHECK = ["python", "-m", "weightspace.report.reproduce", "--against", "HEAD"]


def test_reproduce_passes_on_the_same_run_and_fails_on_planted_changes(plumbing, tmp_path):
    """`python -m weightspace.report.reproduce --against HEAD` through DVC on real metric files: the same run
    reproduces; one number moved beyond its band, or one verdict flipped, does not."""
    from weightspace.weights import noise
    from weightspace.report import reproduce

    root, tmp = plumbing
    exp = committed_copy(root, tmp_path / "planted")
    ok = run(CHECK, exp, tmp)
    assert ok.stdout.splitlines()[-1].startswith("REPRODUCED") and "verdicts that differ: 0" in ok.stdout, ok.stdout
    band = noise.bands(reproduce.load("HEAD", str(exp)))["geometry:cosine.global.sft-dft"]
    geo_path = exp / "metrics/geometry.json"
    geo = json.loads(geo_path.read_text())
    geo["cosine"]["global"]["sft-dft"] += 2 * band + 0.1  # beyond the cosines' band (the plumbing run's is wide)
    geo_path.write_text(json.dumps(geo))
    bad = run(CHECK, exp, tmp, check=False)
    assert bad.returncode == 1 and "EXCEEDS" in bad.stdout and "geometry:cosine.global.sft-dft" in bad.stdout
    run(["git", "checkout", "--", "metrics/geometry.json"], exp, tmp)
    claims_path = exp / "metrics/claims.json"
    claims = json.loads(claims_path.read_text())
    flipped = next(k for k, c in claims["claims"].items() if c["verdict"] in ("holds", "does not hold"))
    other = "does not hold" if claims["claims"][flipped]["verdict"] == "holds" else "holds"
    was = claims["claims"][flipped]["verdict"]
    claims["claims"][flipped]["verdict"] = other
    claims_path.write_text(json.dumps(claims))
    bad = run(CHECK, exp, tmp, check=False)
    assert bad.returncode == 1 and f"{flipped}: {was} -> {other}" in bad.stdout, bad.stdout
