"""tools/gpu_check.py's CPU dry mode: the GPU check's whole code path (three Qwen3 shapes scaled down to 2 layers
of width 64, the pipeline's training loop for SFT, DPO and offline GRPO in bf16, the rerun, merge and log 2
checks, the JSON) runs in the fast tier, so the script is ready when a GPU slot comes."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from conftest import REPO


def test_dry_run_writes_every_measurement_and_passes_its_checks(tmp_path):
    out = tmp_path / "gpu_check.json"
    p = subprocess.run([sys.executable, str(REPO / "tools/gpu_check.py"), "--dry", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(out.read_text())
    assert r["dry"] is True and set(r["shapes"]) == {"qwen3-0.6b", "qwen3-1.7b", "qwen3-4b"}
    assert r["shapes"]["qwen3-4b"]["profile"] == "paper.yaml"
    for shape in r["shapes"].values():
        assert set(shape["methods"]) == {"sft", "dpo", "grpo"}
        for m, x in shape["methods"].items():
            assert not x["oom"] and x["tokens_per_s"] > 0 and x["step_s"] > 0 and len(x["losses"]) == 2, (m, x)
        # a DPO unit is a pair: twice the sequences of an SFT step at the same micro-batch
        assert shape["methods"]["dpo"]["sequences_per_step"] == 2 * shape["methods"]["sft"]["sequences_per_step"]
        assert math.isclose(shape["methods"]["dpo"]["first_loss"], math.log(2), abs_tol=1e-6)
    # the paper profile's DPO micro-step (4 pairs x 8192 tokens) at Qwen3-4B, derived by hand: N = V H + L (2 H q +
    # 2 H kv + 3 H I + 2 H + 2 head_dim) + H = 151936*2560 + 36*(20971520 + 5242880 + 74711040 + 5376) + 2560
    # = 4,022,468,096 (Qwen3-4B's published count); LoRA r=32 on q/k/v/o: 36*32*(6656 + 2*3584 + 6656) = 23,592,960
    e = r["memory_estimate"]["shapes"]["qwen3-4b"]["dpo"]
    assert (e["sequences"], e["params"], e["lora_params"]) == (8, 4_022_468_096, 23_592_960)
    want = (2 * 4_022_468_096 + 16 * 23_592_960 + 2 * 8 * 8192 * 2560 * 36 + 4 * 8 * 8192 * 151936) / 2**30
    assert math.isclose(e["total_gib"], want, rel_tol=1e-12) and math.isclose(e["total_gib"], 56.188, abs_tol=1e-3)
    assert e["terms_gib"]["logits"] > e["terms_gib"]["layer_recompute"]  # the logits and their gradient set the peak
    assert math.isclose(e["margin_gib"], 80 - 1 - want, rel_tol=1e-12)
    assert r["memory_estimate"]["shapes"]["qwen3-4b"]["sft"]["sequences"] == 4
    c = r["checks"]
    assert c["rerun_bit_equal"]["ok"] and c["rerun_bit_equal"]["sft"]["equal"] and c["rerun_bit_equal"]["dpo"]["equal"]
    assert c["bf16_merge_exact"]["ok"] and c["bf16_merge_exact"]["max_abs_error"] <= 1e-8
    assert c["bf16_merge_exact"]["bf16_naive_unchanged_share"] > 0.5  # what bf16(W0 + dW) would have lost
    assert c["dpo_first_loss_log2"]["ok"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the real check runs instead")
def test_without_a_gpu_the_real_check_refuses_and_names_the_dry_mode(tmp_path):
    p = subprocess.run([sys.executable, str(REPO / "tools/gpu_check.py"), "--out", str(tmp_path / "x.json")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "no CUDA device" in p.stderr and "--dry" in p.stderr
    assert not (tmp_path / "x.json").exists()


def test_the_plan_reads_a_gpu_measurement_and_marks_what_it_measured(tmp_path):
    """benchmarks/gpu_plan.py --plan with a GPU check JSON: the profiles whose shape was measured (paper: 4B,
    qwen3-1.7b) get training hours marked (m) from its tokens/s; Llama's shape was not measured and stays (a).
    The JSON is the dry run's with its dry flag cleared (a stand-in for a GPU run), so the hours follow from its
    tokens/s: steps x batch x sequences x padded tokens / tokens/s."""
    out = tmp_path / "check.json"
    subprocess.run([sys.executable, str(REPO / "tools/gpu_check.py"), "--dry", "--out", str(out), "--shapes",
                    "qwen3-1.7b", "qwen3-4b"], check=True, capture_output=True)
    r = json.loads(out.read_text())
    r.update(dry=False, device="stand-in GPU")
    out.write_text(json.dumps(r))
    p = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_plan.py"), "--plan", "--check", str(out)],
                       check=True, capture_output=True, text=True)
    rows = {line.split("|")[1].strip(): line for line in p.stdout.splitlines() if line.startswith("| ") and "(" in line}
    assert "(m)" in rows["paper (qwen3-4b)"].split("|")[3] and "(m)" in rows["qwen3-1.7b (qwen3-1.7b)"].split("|")[3]
    assert "(a)" in rows["llama3.2-3b (llama3.2-3b)"].split("|")[3] and "(m)" not in rows["llama3.2-3b (llama3.2-3b)"]
    sys.path.insert(0, str(REPO / "benchmarks"))
    import gpu_plan
    from weightspace import config

    plan = gpu_plan.profile_plan(REPO / "profiles/qwen3-1.7b.yaml", r)
    t = config.load(REPO / "profiles/qwen3-1.7b.yaml").train
    tok = {m: r["shapes"]["qwen3-1.7b"]["methods"][m]["tokens_per_s"] for m in ("sft", "dpo", "grpo")}
    per = lambda m, seqs: t.steps * t.batch_size * seqs * plan["padded_tokens"] / tok[m] / 3600  # noqa: E731
    want = 2 * (4 * per("sft", 1) + per("grpo", 1) + per("dpo", 2)) + per("dpo", 2)  # twins; LR-matched DPO
    assert math.isclose(plan["groups"]["train (methods, seed twins, LR-matched)"][0], want, rel_tol=1e-9)


def test_the_readme_table_is_the_plans_output():
    """The README's GPU-hours table is what `python benchmarks/gpu_plan.py --plan` prints for the committed GPU
    check (none committed: every figure assumed)."""
    p = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_plan.py"), "--plan"], check=True, capture_output=True,
                       text=True)
    table = [line for line in p.stdout.splitlines() if line.startswith("|")]
    readme = (REPO / "README.md").read_text()
    assert "<!-- python benchmarks/gpu_plan.py --plan -->\n" + "\n".join(table) + "\n" in readme


BARE = ["transformers==5.17.0", "peft==0.21.2", "accelerate==1.15.0", "safetensors", "pyyaml"]


@pytest.mark.slow
def test_dry_run_on_a_bare_gpu_image_with_the_carried_bundle(tmp_path):
    """A venv with only what a bare GPU image has (the CPU torch, transformers, peft, accelerate, safetensors,
    PyYAML; pydantic, which typer pulls in, removed): in a copy of the tree, as a device run gets it, the check
    stops before any compute naming `make gpu-bundle`; with the bundle carried (``tools/gpu_bundle.py``) it runs."""
    from conftest import copy_repo

    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True, capture_output=True)
    subprocess.run([*pip, *BARE], check=True, capture_output=True)
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "uninstall", "-q", "-y", "pydantic", "pydantic_core"],
                   check=True, capture_output=True)
    have = subprocess.run([str(venv / "bin/python"), "-m", "pip", "list", "--format=json"], check=True,
                          capture_output=True, text=True).stdout
    names = {p["name"].lower().replace("_", "-") for p in json.loads(have)}
    assert {"torch", "transformers", "peft", "accelerate"} <= names and not names & {"pydantic", "vllm", "trl", "dvc"}
    tree = copy_repo(tmp_path / "tree")
    cmd = [str(venv / "bin/python"), "tools/gpu_check.py", "--dry", "--out", str(tmp_path / "x.json")]
    p = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, timeout=600)
    assert p.returncode != 0 and "pydantic is not installed" in p.stderr and "make gpu-bundle" in p.stderr
    assert not (tmp_path / "x.json").exists()
    subprocess.run([sys.executable, "tools/gpu_bundle.py"], cwd=tree, check=True, capture_output=True)
    p = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    r = json.loads((tmp_path / "x.json").read_text())
    assert r["checks"]["rerun_bit_equal"]["ok"] and r["checks"]["dpo_first_loss_log2"]["ok"]
