"""The stage graph re-runs what changed and nothing else: every stage's code deps in dvc.yaml equal the
import closure of its script within src/ (every ``weightspace`` import, at module level or inside a
function, since either runs when the stage does; ``if TYPE_CHECKING:`` blocks never run), plus, for a
training stage, its method's registry module and that module's closure; the registry modules a stage
lists equal the entries it fetches (recorded while the plumbing run's stages ran, like the params); every
stage's params equal the params it reads; and src/ has no import cycle."""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess

import pytest
import yaml

from conftest import PARAMS_READ, REPO, copy_repo, run

SRC = REPO / "src"


def module_files() -> dict[str, str]:
    """``weightspace.x.y`` -> its path relative to the repository root."""
    out = {}
    for p in sorted((SRC / "weightspace").rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p.relative_to(REPO).as_posix()
    return out


MODULES = module_files()
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
REGISTRY_DIR = "src/weightspace/registry"  # a dep of the stages that read every method's entry
# one module per method, found by the registry at run time (importlib), so no static import reaches them
ENTRIES = sorted(m.rsplit(".", 1)[1] for m in MODULES if m.startswith("weightspace.registry."))


def _runtime_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                stack += child.orelse
            else:
                stack.append(child)


def imports(name: str) -> set[str]:
    """The ``weightspace`` modules that module ``name`` imports (absolute or relative, anywhere in it)."""
    path = REPO / MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found |= {m for m in [base] + [f"{base}.{a.name}" for a in node.names] if m in MODULES}
    return found - {name}


GRAPH = {m: imports(m) for m in MODULES}


def closure(name: str) -> set[str]:
    """``name``, its packages' ``__init__`` modules and everything they import, transitively."""
    todo, seen = [name], set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in MODULES]
        todo += sorted(GRAPH[m])
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), or a module importing itself."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def stages() -> dict[str, dict]:
    """dvc.yaml's stages, a ``foreach`` stage as its ``do`` template."""
    raw = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: s.get("do", s) for name, s in raw.items()}


def script(stage: dict) -> str:
    m = re.search(r"-m (weightspace\.stages\.\w+)", stage["cmd"])
    assert m, f"no stage script in {stage['cmd']!r}"
    return m.group(1)


def test_cycles_finds_a_cycle_and_src_has_none():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert cycles(GRAPH) == []


def test_imports_reads_relative_lazy_and_package_imports_but_not_type_checking_ones():
    assert {"weightspace.methods", "weightspace.stages.common", "weightspace.rollouts",
            "weightspace.training"} <= imports("weightspace.stages.train")
    assert {"weightspace.online", "weightspace.training"} <= imports("weightspace.methods")  # inside Method.fit
    assert "weightspace.function_space" in imports("weightspace.generation")  # inside a method
    assert "weightspace.losses" in imports("weightspace.registry.sft")  # inside sft_loss
    assert "if TYPE_CHECKING:\n    import torch\n\n    from ..losses import" in (
        REPO / MODULES["weightspace.registry.dpo"]).read_text()
    assert "weightspace.losses" not in imports("weightspace.registry.dpo")
    assert imports("weightspace.registry.dpo") == {"weightspace.registry", "weightspace.schema"}


def render(dep: str, item: str | None) -> str:
    """A dep of a stage template as DVC renders it for ``item`` (``${item}``, ``${a.b}`` from params.yaml)."""
    def value(m):
        if m.group(1) == "item":
            return item
        v = PARAMS
        for k in m.group(1).split("."):
            v = v[k]
        return str(v)

    return re.sub(r"\$\{([\w.]+)\}", value, dep)


def files(names: set[str]) -> set[str]:
    return {MODULES[m] for m in names} - {"src/weightspace/__init__.py", "src/weightspace/stages/__init__.py"}


@pytest.mark.parametrize("name", sorted(stages()))
def test_each_stage_lists_exactly_the_code_its_script_imports(name):
    """A training stage also lists its method's registry module (``${item}``; rendered for every registered
    method) and that module's closure; a stage that reads every method's entry lists the registry folder
    (checked against what it fetches when it runs, below)."""
    stage = stages()[name]
    code = [d for d in stage.get("deps", []) if d.startswith("src/")]
    want = files(closure(script(stage)))
    trains = "weightspace.methods" in closure(script(stage))
    for item in ENTRIES if any("${item}" in d for d in code) else [None]:
        listed = {render(d, item) for d in code} - {REGISTRY_DIR}
        w = set(want)
        if trains:
            own = render("${item}" if item else stage["cmd"].split("--method ")[1].split()[0], item)
            w |= files(closure(f"weightspace.registry.{own}"))
        assert not w - listed, f"{name} ({item}): imports but does not list {sorted(w - listed)}"
        assert not listed - w, f"{name} ({item}): lists but never imports {sorted(listed - w)}"


def test_no_training_stage_depends_on_the_analyses():
    """The analyses, claims and figures are read after training: editing them never re-trains."""
    later = {"src/weightspace/geometry.py", "src/weightspace/analysis.py", "src/weightspace/claims.py",
             "src/weightspace/figures.py"}
    for name in ("train", "train_lr_matched", "lr_sweep"):
        assert not later & set(stages()[name]["deps"]), name


def test_only_the_training_stages_depend_on_the_training_code():
    """A loss, the training loop or the online trainer edited re-runs the training stages and what follows them,
    never the data, the base, the teacher (an API's cost on the paper profile) or the evaluation of the base."""
    code = {"src/weightspace/losses.py", "src/weightspace/training.py", "src/weightspace/online.py",
            "src/weightspace/methods.py"} | {f"{REGISTRY_DIR}/{m}.py" for m in ENTRIES}
    assert {name for name, s in stages().items()
            if code & {render(d, m) for d in s.get("deps", []) for m in ENTRIES}} == {
        "train", "train_lr_matched", "lr_sweep"}


def test_editing_the_analyses_leaves_every_training_stage_up_to_date(tmp_path):
    """`dvc status` on a fresh copy after editing geometry.py, analysis.py, claims.py and figures.py names
    the stages that read them and no train@, lr_sweep@ or train_lr_matched stage."""
    root = copy_repo(tmp_path / "clone")
    for f in ("geometry", "analysis", "claims", "figures"):
        p = root / f"src/weightspace/{f}.py"
        p.write_text(p.read_text() + "\n# edited\n")
    tracked = set(subprocess.run(["git", "ls-files"], cwd=root, check=True, capture_output=True,
                                 text=True).stdout.split())
    status = json.loads(run(["dvc", "status", "--json"], root, tmp_path).stdout or "{}")
    edited = {stage for stage, entries in status.items() for e in entries if isinstance(e, dict)
              for path in e.get("changed deps", {}) if path in tracked}
    assert {"geometry", "alignment@sft", "figures", "report"} <= edited, sorted(edited)
    assert not {s for s in edited if s.split("@")[0] in ("train", "lr_sweep", "train_lr_matched")}, sorted(edited)


def test_a_new_registry_entry_re_runs_no_existing_methods_training(tmp_path):
    """A loss added the documented way (one module in registry/, its section in params.yaml, its name in
    ``methods``) validates, gets its own train@ stage, and leaves every existing method's train@, lr_sweep@,
    alignment@ and evaluate@ stage and train_lr_matched up to date (`dvc status` on a fresh copy)."""
    root = copy_repo(tmp_path / "clone")
    sft = (root / REGISTRY_DIR / "sft.py").read_text()
    assert 'METHOD = Method("sft", SFT, "all", loss=batch_loss)' in sft
    (root / REGISTRY_DIR / "halfsft.py").write_text(
        sft.replace('"""SFT:', '"""Half SFT (a test\'s new method):').replace(
            "return sequence_nll(logp, mask).sum() / normaliser", "return 0.5 * sequence_nll(logp, mask).sum() / normaliser")
        .replace('METHOD = Method("sft"', 'METHOD = Method("halfsft"'))
    params = root / "params.yaml"
    text = params.read_text()
    params.write_text(text.replace("  - dpo\n", "  - dpo\n  - halfsft\n", 1) + "halfsft:\n  lr: 1.0e-4\n")
    check = "from weightspace import config; p = config.load('params.yaml'); print(p.methods[-1], p.halfsft.lr)"
    assert run(["python", "-c", check], root, tmp_path,
               extra_env={"PYTHONPATH": str(root / "src")}).stdout.split() == ["halfsft", "0.0001"]
    tracked = set(subprocess.run(["git", "ls-files"], cwd=root, check=True, capture_output=True,
                                 text=True).stdout.split()) | {"params.yaml"}
    status = json.loads(run(["dvc", "status", "--json"], root, tmp_path).stdout or "{}")
    assert "train@halfsft" in status
    edited = {stage for stage, entries in status.items() for e in entries if isinstance(e, dict)
              for path in e.get("changed deps", {}) if path in tracked}
    assert {"geometry", "report"} <= edited, sorted(edited)
    existing = {f"{kind}@{m}" for kind in ("train", "lr_sweep", "alignment", "evaluate") for m in PARAMS["methods"]}
    assert not edited & (existing | {"train_lr_matched"}), sorted(edited & (existing | {"train_lr_matched"}))


def covers(listed: str, key: str) -> bool:
    return key == listed or key.startswith(listed + ".")


# listed params the plumbing run's stages never read, because only another branch reads them: the api teacher
# (checked below on the paper profile), the report's paragraph on the tiny and smollm2 profiles, the LR sweep when
# controls.lr_sweep is not empty (test_pipeline.py's sweep test trains it)
OTHER_PROFILES = {"teacher": {"rollouts.generation.openai"}, "report": {"train.steps"},
                  "lr_sweep": {"train", "threads"}}


def read_by_stage(module: str, params: str, args: list[str], tmp) -> list[str]:
    log = tmp / "read.jsonl"
    run(["python", "-m", module, "--params", params, *args], tmp, tmp, extra_env={"WEIGHTSPACE_PARAMS_READ": str(log)})
    return json.loads(log.read_text())["read"]


def test_the_api_teacher_reads_its_endpoint_which_the_stage_lists(tmp_path):
    """The paper profile's teacher is the api: its stage, run for real (it writes api.json and nothing else),
    reads rollouts.generation.openai, and every key it reads is under a param the teacher stage lists."""
    read = read_by_stage("weightspace.stages.teacher", str(REPO / "profiles/paper.yaml"),
                         ["--data", "d", "--base", "b", "--out", "t", "--metrics", "m.json"], tmp_path)
    assert {"rollouts.generation.openai.base_url", "rollouts.generation.openai.model"} <= set(read), read
    listed = stages()["teacher"]["params"]
    assert [k for k in read if not any(covers(p, k) for p in listed)] == []
    assert json.loads((tmp_path / "t/api.json").read_text())["base_url"].startswith("http")


def test_each_stage_lists_exactly_the_params_it_reads(plumbing):
    """Each stage of the plumbing run (dvc.lock names its rendered command and params) against the keys its
    process read (``schema.trace``): every key read is under a listed param, and every listed param was read."""
    root, folder = plumbing
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    by_args = {}
    for name, stage in lock.items():
        tokens = shlex.split(stage["cmd"])
        by_args[tuple(tokens[tokens.index("-m") + 2:])] = name
    read: dict[str, set[str]] = {}
    fetched: dict[str, set[str]] = {}
    for line in (folder / PARAMS_READ).read_text().splitlines():
        entry = json.loads(line)
        assert tuple(entry["argv"]) in by_args, f"no stage of dvc.lock runs {entry['argv']}"
        read.setdefault(by_args[tuple(entry["argv"])], set()).update(entry["read"])
        fetched.setdefault(by_args[tuple(entry["argv"])], set()).update(entry["entries"])
    # the registry modules each stage lists: its own method's (a training stage: exactly the entry it fetched), or
    # the folder where it reads the entries of several methods, or none where it fetches none
    wrong = []
    for name, got in sorted(fetched.items()):
        deps = {d["path"] for d in lock[name]["deps"]}
        own = {d.removeprefix(REGISTRY_DIR + "/").removesuffix(".py") for d in deps
               if d.startswith(REGISTRY_DIR + "/") and d != REGISTRY_DIR + "/__init__.py"}
        if (REGISTRY_DIR in deps) != bool(got - own) or (REGISTRY_DIR not in deps and got != own):
            wrong.append(f"{name}: fetches {sorted(got)}, lists {sorted(own)}, folder {REGISTRY_DIR in deps}")
    assert not wrong, "\n".join(wrong)
    assert set(read) == set(lock), f"stages that recorded nothing: {sorted(set(lock) - set(read))}"
    problems = []
    for name, keys in sorted(read.items()):
        listed = set(lock[name].get("params", {}).get("params.yaml", {}))
        unlisted = sorted(k for k in keys if not any(covers(p, k) for p in listed))
        unread = sorted(p for p in listed - OTHER_PROFILES.get(name.split("@")[0], set())
                        if not any(covers(p, k) or covers(k, p) for k in keys))
        if unlisted or unread:
            problems.append(f"{name}: reads but does not list {unlisted}; lists but never reads {unread}")
    assert not problems, "\n".join(problems)
