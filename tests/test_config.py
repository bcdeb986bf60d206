import copy
import re

import pytest
import yaml

from conftest import REPO
from weightspace import config
from weightspace.config import ParamsError

RAW = yaml.safe_load((REPO / "params.yaml").read_text())


def load_with(tmp_path, mutate):
    raw = copy.deepcopy(RAW)
    mutate(raw)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(raw))
    return config.load(p)


def test_committed_params_load():
    p = config.load(REPO / "params.yaml")
    assert p.methods == ("sft", "rft", "dft", "rift", "grpo", "dpo")
    assert p.method("dpo").lr == pytest.approx(p.method("sft").lr / 10)  # the paper's DPO convention
    with pytest.raises(Exception):
        p.train.steps = 1  # frozen


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["train"].update(stepz=3), r"^train\.stepz: unknown key"),
    (lambda r: r["train"].pop("steps"), r"^train\.steps: missing key"),
    (lambda r: r["train"].update(steps="many"), r"^train\.steps: expected an integer"),
    (lambda r: r["train"].update(steps=2.5), r"^train\.steps: expected an integer"),
    (lambda r: r["train"].update(bf16="yes"), r"^train\.bf16: expected true/false"),
    (lambda r: r.update(threads=True), r"^threads: expected an integer, got True"),
    (lambda r: r["dpo"].update(lr=True), r"^dpo\.lr: expected a finite number, got True"),
    (lambda r: r["dpo"].update(lr="fast"), r"^dpo\.lr: expected a finite number, got 'fast'"),
    (lambda r: r["methods"].append("ppo"), r"^methods\[6\]: 'ppo' is not one of"),
    (lambda r: r["dpo"].update(lr=0), r"^dpo\.lr: must be positive"),
    (lambda r: r["sft"].update(lr=-1e-5), r"^sft\.lr: must be positive"),
    (lambda r: r["rift"].update(variant="tokens"), r"^rift\.variant: 'tokens' is not one of"),
    (lambda r: r["rollouts"]["generation"].update(engine="tgi"), r"^rollouts\.generation\.engine: 'tgi'"),
    (lambda r: r["rollouts"]["teacher"].update(kind="api"), r"^rollouts\.teacher\.kind: 'api' does not go with"),
    (lambda r: r["rollouts"]["teacher"].update(kind="hub"), r"^rollouts\.teacher\.hub: required when kind is hub"),
    (lambda r: r["rollouts"]["teacher"]["tiny"].update(steps=-1), r"^rollouts\.teacher\.tiny\.steps: must be >= 0"),
    (lambda r: r["rollouts"]["teacher"]["tiny"].update(style="fancy"), r"^rollouts\.teacher\.tiny\.style: 'fancy'"),
    (lambda r: r["base"].update(kind="hub", hub={"model_id": "x/y", "revision": "main", "thinking": None}),
     r"^rollouts\.teacher\.kind: tiny needs base\.kind tiny"),
    (lambda r: r["base"].update(kind="hub", hub={"model_id": "x/y", "revision": "main", "thinking": "off"}),
     r"^base\.hub\.thinking: "),
    (lambda r: r["prompt"].update(template="no placeholder"), r"^prompt\.template: must contain"),
    (lambda r: r["base"].update(tiny=None), r"^base\.tiny: required when kind is tiny"),
    (lambda r: r.update(extra=1), r"^extra: unknown key"),
    (lambda r: r.pop("kto"), r"^kto: missing key$"),
    (lambda r: r["ipo"].update(tau=0), r"^ipo\.tau: must be positive"),
    (lambda r: r["simpo"].update(margin=1), r"^simpo\.margin: unknown key"),
    (lambda r: r["kto"].update(undesirable_weight=-1), r"^kto\.undesirable_weight: must be positive"),
    (lambda r: r["dpo"].update(beta=0), r"^dpo\.beta: must be positive"),
    (lambda r: r.update(method_params={}), r"^method_params: unknown key"),
    (lambda r: r.update(methods=[]), r"^methods: empty"),
    (lambda r: (r.update(methods=[*r["methods"], "kto"]), r["train"].update(micro_batch_size=1)),
     r"^train\.micro_batch_size: kto needs at least 2"),
    (lambda r: r["sft"].update(lr=float("inf")), r"^sft\.lr: expected a finite number, got inf"),
    (lambda r: r["sft"].update(lr="1e999"), r"^sft\.lr: expected a finite number"),
    (lambda r: r["grpo"].update(bias=float("nan")), r"^grpo\.bias: expected a finite number"),
    (lambda r: r["rollouts"]["generation"].update(top_p=1.5), r"^rollouts\.generation\.top_p: must lie in \(0, 1\]"),
    (lambda r: r["prompt"].update(template="{{question}}"), r"^prompt\.template: must contain"),
    (lambda r: r["rollouts"].update(reasoning="summarise"), r"^rollouts\.reasoning: 'summarise'"),
    (lambda r: r["rollouts"].update(overlong="cut"), r"^rollouts\.overlong: 'cut'"),
    (lambda r: r["rollouts"].pop("overlong"), r"^rollouts\.overlong"),
    (lambda r: r["evaluate"]["generation"].update(engine="vllm"),
     r"^evaluate\.generation\.max_model_len: required when engine is vllm"),
    (lambda r: r["evaluate"]["generation"].update(max_model_len=4096),
     r"^evaluate\.generation\.max_model_len: required when engine is vllm, null otherwise \(engine hf\)"),
    (lambda r: r["evaluate"]["generation"].update(engine="vllm", max_model_len=64, gpu_memory_utilization=0.9),
     r"^evaluate\.generation\.max_model_len: 64 leaves no room for a prompt before max_new_tokens=64"),
    (lambda r: r["evaluate"]["generation"].update(engine="vllm", max_model_len=512, gpu_memory_utilization=1.5),
     r"^evaluate\.generation\.gpu_memory_utilization: must lie in \(0, 1\]"),
    (lambda r: r["grpo_online"].update(engine="vllm", gpu_memory_utilization=1.0),
     r"^grpo_online\.gpu_memory_utilization: must lie in \(0, 1\), got 1\.0"),
    (lambda r: r["grpo_online"].update(top_p=1.5), r"^grpo_online\.top_p: must lie in \(0, 1\], got 1\.5"),
    (lambda r: r["base"]["tiny"].update(min_acc=0.8), r"^base\.tiny\.min_acc: need 0 <= min_acc <= max_acc"),
    (lambda r: r["rift"].update(neg_lambda=-0.2), r"^rift\.neg_lambda: must be >= 0"),
    (lambda r: r["train"].update(weight_decay=-0.01), r"^train\.weight_decay: must be >= 0"),
    (lambda r: r["controls"].update(seed=42), r"^controls\.seed: must differ from train\.seed=42"),
    (lambda r: r["controls"].update(lr_sweep=[1e-5, 0]), r"^controls\.lr_sweep\[1\]: must be positive"),
    (lambda r: r["controls"].update(lr_sweep=[1e-5, 1e-5]), r"^controls\.lr_sweep: repeated learning rates"),
    (lambda r: r["controls"]["lr_matched"].update(lr_of="dpo"), r"^controls\.lr_matched\.lr_of: must differ"),
    (lambda r: r["controls"]["lr_matched"].update(method="ppo"), r"^controls\.lr_matched\.method: 'ppo'"),
    (lambda r: r["connectivity"].update(pairs=["sft-ppo_seed"]), r"^connectivity\.pairs\[0\]: 'sft-ppo_seed'"),
    (lambda r: r["report"].update(aime_set="aime26"), r"^report\.aime_set: 'aime26' is not an evaluation set"),
])
def test_bad_params_name_the_key(tmp_path, mutate, message):
    with pytest.raises(ParamsError) as e:
        load_with(tmp_path, mutate)
    assert re.search(message, str(e.value)), str(e.value)
    assert "\n" not in str(e.value)


def test_dvc_exp_set_string_numbers_load_as_numbers(tmp_path):
    # `dvc exp run -S dpo.lr=1e-5` writes `lr: 1e-05`; PyYAML reads that as the string '1e-05'
    text = (REPO / "params.yaml").read_text()
    text = re.sub(r"(dpo:\n  lr:) [^\n]*", r"\1 1e-05", text)
    (tmp_path / "params.yaml").write_text(text)
    assert yaml.safe_load(text)["dpo"]["lr"] == "1e-05"
    p = config.load(tmp_path / "params.yaml")
    assert p.method("dpo").lr == 1e-5 and isinstance(p.method("dpo").lr, float)


def test_a_connectivity_pair_naming_an_online_method_runs_only_when_it_is_trained(tmp_path):
    p = config.load(REPO / "params.yaml")
    assert "grpo_online-grpo" in p.connectivity.pairs and "grpo_online" not in p.methods
    assert "grpo_online-grpo" not in p.connectivity_pairs()
    assert set(p.connectivity_pairs()) == set(p.connectivity.pairs) - {"grpo_online-grpo"}
    on = load_with(tmp_path, lambda r: r["methods"].append("grpo_online"))
    assert on.connectivity_pairs() == on.connectivity.pairs
    # an offline method outside methods is still a mistake, named before any compute
    with pytest.raises(ParamsError, match=r"connectivity.pairs\[7\]: 'ipo-sft' uses a method not in methods"):
        load_with(tmp_path, lambda r: r["connectivity"]["pairs"].append("ipo-sft"))


def test_unknown_method_lookup():
    p = config.load(REPO / "params.yaml")
    with pytest.raises(ParamsError, match="method 'ppo': unknown"):
        p.method("ppo")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        config.load(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1,\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        config.load(tmp_path / "bad.yaml")


def test_stage_rejects_bad_params_before_writing(tmp_path):
    from weightspace.stages import prepare

    bad = tmp_path / "params.yaml"
    bad.write_text((REPO / "params.yaml").read_text().replace("n_pretrain: 20000", "n_pretrain: lots"))
    with pytest.raises(ParamsError, match="prepare.generator.n_pretrain"):
        prepare.main(["--params", str(bad), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", sorted((REPO / "profiles").glob("*.yaml")) + [REPO / "params.yaml"],
                         ids=lambda p: p.name)
def test_every_profile_validates(path):
    p = config.load(path)
    assert p.profile == ("tiny" if path.name == "params.yaml" else path.stem)  # a profile is named by its file
    assert p.methods == ("sft", "rft", "dft", "rift", "grpo", "dpo")  # the paper's six; the extra losses are opt-in


def test_paper_profile_is_the_papers_protocol():
    p = config.load(REPO / "profiles/paper.yaml")
    assert p.base.hub.model_id == "Qwen/Qwen3-4B-Instruct-2507"
    assert p.prepare.train.path == "agentica-org/DeepScaleR-Preview-Dataset"
    assert {k: v.path for k, v in p.prepare.eval.items()} == {"gsm8k": "openai/gsm8k", "aime26": "MathArena/aime_2026"}
    assert p.rollouts.k == 4 and p.rollouts.generation.engine == "openai"
    t = p.train
    assert (t.lora.r, t.lora.alpha, t.lora.dropout) == (32, 64, 0.0)
    assert set(t.lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert (t.batch_size, t.warmup_ratio, t.weight_decay, t.grad_clip, t.seed) == (32, 0.05, 0.01, 1.0, 42)
    assert (t.steps, t.compare_step, t.bf16) == (1500, 1000, True)
    assert all(p.method(m).lr == 5e-6 for m in ("sft", "rft", "dft", "rift", "grpo")) and p.method("dpo").lr == 5e-7
    assert p.method("rift").neg_lambda == 0.2 and p.method("grpo").bias == 0.1 and p.method("dpo").beta == 0.1
    assert p.geometry.top_k == 10 and p.cka.n == 100
    assert p.prompt.render("Q").endswith("within \\boxed{}.")


def test_profile_switch_is_visible(tmp_path):
    # `make profile-paper` copies the profile over params.yaml; the `profile` key names what is in force
    assert yaml.safe_load((REPO / "params.yaml").read_text())["profile"] == "tiny"
    assert yaml.safe_load((REPO / "profiles/paper.yaml").read_text())["profile"] == "paper"
    assert "cp profiles/paper.yaml params.yaml" in (REPO / "Makefile").read_text()


@pytest.mark.parametrize("path", [REPO / "params.yaml", *sorted((REPO / "profiles").glob("*.yaml"))],
                         ids=lambda p: p.name)
def test_every_param_a_stage_reads_exists_in_every_profile(path):
    """DVC fails a stage whose listed param is missing from params.yaml: each dotted key of every stage
    (foreach expanded over the profile's methods, ${...} resolved) must exist in every profile."""
    import re

    raw = yaml.safe_load(path.read_text())
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]

    def resolve(text, item=None):
        def get(expr):
            if expr == "item":
                return item
            d = raw
            for k in expr.split("."):
                d = d[k]
            return d
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(get(m.group(1))), text)

    def exists(key):
        d = raw
        for k in key.split("."):
            if not isinstance(d, dict) or k not in d:
                return False
            d = d[k]
        return True

    missing = []
    for name, st in stages.items():
        items = raw["methods"] if "foreach" in st else [None]
        body = st["do"] if "foreach" in st else st
        for item in items:
            for p in body.get("params", []):
                key = resolve(p, item)
                if not exists(key):
                    missing.append(f"{name}: {key}")
    assert not missing, missing


def test_validating_the_whole_file_runs_no_loss_code():
    """Every stage validates all of params.yaml, every method's section with its params class (its registry module),
    but imports none of the loss code: not torch, not the micro-batch type the losses read (``registry._batch``), not
    the training code. (A fresh process: this one has imported them for other tests.)"""
    import subprocess
    import sys

    from conftest import REPO

    code = ("import sys; from weightspace import config; config.load('params.yaml'); "
            "print(' '.join(sorted(m for m in sys.modules if m == 'torch' or m.startswith('weightspace'))))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True,
                            text=True).stdout.split()
    assert "weightspace.registry.dpo" in loaded  # its section is validated by its own class
    assert not [m for m in loaded if m == "torch" or m == "weightspace.registry._batch"
                or m.startswith(("weightspace.train", "weightspace.model"))], loaded
