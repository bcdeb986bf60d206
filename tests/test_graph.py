"""The stage graph re-runs what changed and nothing else. Every stage's code deps in dvc.yaml cover the
import closure of its script within src/ (every ``weightspace`` import, at module level or inside a function,
since either runs when the stage does; ``if TYPE_CHECKING:`` blocks never run), each listed dep holds a module
of that closure, and a dep names a phase folder of ``src/weightspace/``, the stage's own script, or a file of
the registry (a training stage: its method's module). The registry modules a stage lists equal the entries it
fetches and its params equal the params it reads (both recorded while the plumbing run's stages ran, by a
test-only proxy: ``tests/tracing/``); an edit of the training code, the analyses or the report re-runs no stage
upstream of it; src/ has no import cycle, and its folders none either (``tools/house.py``)."""

from __future__ import annotations

import ast
import json
import posixpath
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from conftest import PARAMS_READ, REPO, copy_repo, run, traced

sys.path.insert(0, str(REPO / "tools"))
import house  # noqa: E402  (tools/house.py: the import graph, counted the same way here and in the closing figures)

SRC = REPO / "src"
PKG = "src/weightspace"
FILES = house.modules(SRC / "weightspace")  # module -> its file, globbed once
MODULES = {m: p.relative_to(REPO).as_posix() for m, p in FILES.items()}
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
REGISTRY_DIR = f"{PKG}/registry"  # a dep of the stages that read every method's entry
# one module per method, found by the registry at run time (importlib), so no static import reaches them
ENTRIES = sorted(m.rsplit(".", 1)[1] for m in MODULES
                 if m.startswith("weightspace.registry.") and not m.rsplit(".", 1)[1].startswith("_"))
PHASES = sorted(p.name for p in (SRC / "weightspace").iterdir() if p.is_dir() and p.name not in
                ("registry", "stages", "__pycache__"))  # core, data, model, ...: a stage lists them whole


def imports(name: str) -> set[str]:
    return house.imports(name, FILES)


GRAPH = {m: imports(m) for m in MODULES}
# what runs: the registry also imports every method module (importlib), which no stage's closure counts (below)
RUNTIME = {**GRAPH, "weightspace.registry": GRAPH["weightspace.registry"] | {f"weightspace.registry.{e}" for e in ENTRIES}}


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
    assert cycles(RUNTIME) == []


def test_no_arrow_between_the_folders_runs_back_up():
    """Folder level (``tools/house.py``: a room is a top-level entry of src/weightspace/): no two rooms import each
    other, directly or through others, counting the registry's importlib edges; a planted edge is seen."""
    rooms = {house.room(m) for m in RUNTIME}
    graph = {r: {house.room(t) for m in RUNTIME if house.room(m) == r for t in RUNTIME[m]} - {r} for r in rooms}
    assert cycles(graph) == []
    assert cycles({**graph, "core": graph["core"] | {"train"}}) != []  # core importing the training code: a cycle
    assert house.house(SRC / "weightspace")["back"] == []


def test_imports_reads_relative_lazy_and_package_imports_but_not_type_checking_ones():
    assert {"weightspace.train.run", "weightspace.stages.common", "weightspace.data.rollouts"} <= imports(
        "weightspace.stages.train")
    assert {"weightspace.train.online", "weightspace.train.training"} <= imports("weightspace.train.run")  # in fit
    assert "weightspace.generate.merge" in imports("weightspace.generate.generation")  # inside a method
    assert "weightspace.registry._batch" in imports("weightspace.registry.sft")  # inside sft_loss
    assert "if TYPE_CHECKING:\n    import torch\n\n    from ._batch import" in (
        REPO / MODULES["weightspace.registry.dpo"]).read_text()
    assert "weightspace.registry._batch" not in imports("weightspace.registry.dpo")
    assert imports("weightspace.registry.dpo") == {"weightspace.registry._entry", "weightspace.core.schema"}


def test_the_package_inits_hold_only_a_docstring():
    """The closure leaves out weightspace/__init__.py and stages/__init__.py (every stage imports both), and a
    phase folder's ``__init__`` is under its folder dep: that holds while none runs code."""
    for m in ("weightspace", "weightspace.stages", *(f"weightspace.{p}" for p in PHASES)):
        body = ast.parse((REPO / MODULES[m]).read_text()).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), m


def test_only_the_registry_and_config_read_the_entries_without_get():
    """Every other module fetches an entry with ``registry.get``, which the plumbing run records for the check of
    the stages' registry deps; config validates every section, and that cannot change a stage's output."""
    allowed = {f"{PKG}/config.py"}

    def reads(f):
        names = {"REGISTRY", "opt_in"}
        return any(isinstance(n, ast.Name) and n.id in names or isinstance(n, ast.Attribute) and n.attr in names
                   or isinstance(n, ast.alias) and n.name in names for n in ast.walk(ast.parse((REPO / f).read_text())))

    assert reads(f"{PKG}/config.py") and not reads(f"{PKG}/report/claims.py")
    assert sorted(f for m, f in MODULES.items() if not (m == "weightspace.registry" or m.startswith("weightspace.registry."))
                  and f not in allowed and reads(f)) == []


def render(dep: str, item: str | None) -> str:
    """A dep of a stage template as DVC renders it for ``item`` (``${item}``, ``${a.b}`` from params.yaml)."""
    def value(m):
        if m.group(1) == "item":
            assert item is not None, f"{dep}: ${{item}} outside a foreach stage"
            return item
        v = PARAMS
        for k in m.group(1).split("."):
            v = v[k]
        return str(v)

    return re.sub(r"\$\{([\w.]+)\}", value, dep)


def under(dep: str, path: str) -> bool:
    """Whether the dep (a file or a folder) holds ``path``."""
    return path == dep or path.startswith(dep + "/")


INITS = {f"{PKG}/__init__.py", f"{PKG}/stages/__init__.py"}


def test_one_dvc_yaml_its_stages_run_at_the_root_and_name_their_deps_one_way():
    """DVC reads every dvc.yaml of the repository and resolves ``./src/x`` like ``src/x``: the checks here read the
    root's alone, as written, so there must be no other, no ``wdir`` and no dep spelled another way."""
    tracked = subprocess.run(["git", "ls-files", "*dvc.yaml"], cwd=REPO, check=True, capture_output=True,
                             text=True).stdout.split()
    assert tracked == ["dvc.yaml"]
    for name, stage in stages().items():
        assert "wdir" not in stage, name
        for d in stage.get("deps", []):
            assert d == posixpath.normpath(d) and not d.startswith(("/", "./")), f"{name}: {d}"


def test_the_code_reaches_modules_only_by_import():
    """The static closure sees every module a stage runs: only the registry imports modules by name at run time, a
    method module's top level only declares (imports, its params class, functions, constants, ``METHOD``), so
    importing it for params validation runs nothing, and the files beside the modules that code reads (the report's
    template) sit in a phase folder, which a stage lists whole."""
    for m, f in MODULES.items():
        tree = ast.parse((REPO / f).read_text())
        dynamic = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and (
            isinstance(n.func, ast.Attribute) and n.func.attr == "import_module"
            or isinstance(n.func, ast.Name) and n.func.id == "__import__")]
        assert not dynamic or m == "weightspace.registry", f
        if m.startswith("weightspace.registry.") and not m.rsplit(".", 1)[1].startswith("_"):
            for node in tree.body:
                ok = isinstance(node, (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef, ast.If)) or (
                    isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) or (
                    isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, (ast.Constant, ast.Call)))
                if isinstance(node, ast.If):
                    ok = isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                    ok = [getattr(x, "id", None) for x in node.targets] == ["METHOD"]
                assert ok, f"{f}:{node.lineno}: runs code at import"
    others = subprocess.run(["git", "ls-files", PKG], cwd=REPO, check=True, capture_output=True, text=True).stdout.split()
    for f in others:
        if not f.endswith(".py"):
            assert f.split("/")[2] in PHASES and "/" in f.removeprefix(f"{PKG}/"), f


def test_dvc_yaml_reads_in_a_minute():
    """At most 300 lines, and a code dep is a phase folder, a stage script, config.py, figures.py (a phase of one
    module each) or a registry file: never a module of a phase folder on its own (that would be the import closure
    spelled out again)."""
    assert len((REPO / "dvc.yaml").read_text().splitlines()) <= 300
    allowed = {f"{PKG}/{p}" for p in PHASES} | {f"{PKG}/config.py", f"{PKG}/figures.py", REGISTRY_DIR}
    for name, stage in stages().items():
        for d in stage.get("deps", []):
            if d.startswith("src/"):
                assert d in allowed or d.startswith((f"{PKG}/stages/", f"{REGISTRY_DIR}/")), f"{name}: {d}"


@pytest.mark.parametrize("name", sorted(stages()))
def test_each_stage_lists_exactly_the_code_its_script_imports(name):
    """Every module of the script's closure is under a listed dep, and every listed dep holds one. A training
    stage also lists its method's registry module (``${item}``; rendered for every registered method) and that
    module's closure; a stage that reads every method's entry lists the registry folder (checked against what it
    fetches when it runs, below)."""
    stage = stages()[name]
    code = [d for d in stage.get("deps", []) if d.startswith("src/")]
    want = closure(script(stage))
    trains = "weightspace.train.run" in want
    for item in ENTRIES if any("${item}" in d for d in code) else [None]:
        listed = {render(d, item) for d in code}
        w = set(want)
        if trains:
            own = render("${item}" if item else stage["cmd"].split("--method ")[1].split()[0], item)
            w |= closure(f"weightspace.registry.{own}")
        paths = {MODULES[m] for m in w} - INITS
        unlisted = sorted(f for f in paths if not any(under(d, f) for d in listed))
        assert not unlisted, f"{name} ({item}): imports but does not list {unlisted}"
        unused = sorted(d for d in listed - {REGISTRY_DIR} if not any(under(d, f) for f in paths))
        assert not unused, f"{name} ({item}): lists but never imports from {unused}"


TRAINING = ("train", "train_lr_matched", "lr_sweep")


UPSTREAM = ("prepare", "base", "teacher", "rollouts", "init", "evaluate_base", "evaluate")


def test_no_stage_before_the_analyses_depends_on_them():
    """The analyses, claims and figures are read after training: editing them re-runs no training stage and nothing
    upstream of training (the base, the API teacher, the table, the init, the evaluations)."""
    later = [f for m, f in MODULES.items() if m.split(".")[1:2] in (["weights"], ["function"], ["report"], ["figures"])]
    assert later
    for name in (*TRAINING, *UPSTREAM):
        assert not [f for f in later if any(under(d, f) for d in stages()[name]["deps"])], name


def test_only_the_stages_over_every_method_list_the_registry_folder():
    """The registry folder holds every loss: only the two stages that read every entry (``Method.offline``) list it,
    both after training; the others list its entry type and, a training stage, its method's module."""
    assert {n for n, s in stages().items() if REGISTRY_DIR in s.get("deps", [])} == {"geometry", "report"}


def test_only_the_training_stages_and_the_init_depend_on_the_training_code():
    """A loss, the training loop or the online trainer edited re-runs the training stages and what follows them,
    never the data, the base, the teacher (an API's cost on the paper profile) or the evaluation of the base.
    ``init`` lists train/ for the LoRA init (``train.lora_init``): an edit of the loop re-runs it too, a few seconds
    whose output is unchanged, and every training stage re-runs on that edit anyway."""
    code = [f for m, f in MODULES.items() if m.startswith("weightspace.train.")] + [f"{REGISTRY_DIR}/_batch.py"] + [
        f"{REGISTRY_DIR}/{m}.py" for m in ENTRIES]
    over = {name for name, s in stages().items()  # the registry folder: geometry and report, after training
            if any(under(render(d, m), f) for d in s.get("deps", []) if d != REGISTRY_DIR for m in ENTRIES for f in code)}
    assert over == {*TRAINING, "init"}


def rendered() -> dict[str, dict]:
    """dvc.yaml's stages as DVC renders them for params.yaml (``train@sft``, ...): name -> {deps, params}."""
    raw = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, s in raw.items():
        for item in PARAMS["methods"] if "foreach" in s else [None]:
            t = s.get("do", s)
            params = [render(p if isinstance(p, str) else next(iter(p)), item) for p in t.get("params", [])]
            out[f"{name}@{item}" if item else name] = {"deps": {render(d.split()[0], item) for d in t["deps"]},
                                                       "params": set(params)}
    return out


def edited_stages(root, tmp) -> set[str]:
    """The stages `dvc status` on a copy without outputs names for a changed command, a changed params key, or a
    changed code dep (a tracked file, or a folder of src/ that holds one); missing data deps and outputs aside."""
    tracked = set(subprocess.run(["git", "ls-files"], cwd=root, check=True, capture_output=True,
                                 text=True).stdout.split()) | {"params.yaml"}
    status = json.loads(run(["dvc", "status", "--json"], root, tmp).stdout or "{}")

    def code(path):
        return path in tracked or (path.startswith("src/") and any(t.startswith(path + "/") for t in tracked))

    return {stage for stage, entries in status.items() for e in entries
            if e == "changed command" or (isinstance(e, dict) and any(code(p) for p in e.get("changed deps", {})))}


def test_editing_the_analyses_leaves_every_training_stage_up_to_date(tmp_path):
    """`dvc status` on a fresh copy after editing geometry.py, analysis.py, claims.py and figures.py names
    exactly the stages whose deps hold them (a folder dep holds them all), and none of them trains."""
    root = copy_repo(tmp_path / "clone")
    edits = {f"{PKG}/{f}.py" for f in ("weights/geometry", "weights/analysis", "report/claims", "figures")}
    for f in edits:
        (root / f).write_text((root / f).read_text() + "\n# edited\n")
    want = {name for name, s in rendered().items() if any(under(d, f) for d in s["deps"] for f in edits)}
    assert not {s for s in want if s.split("@")[0] in TRAINING}, sorted(want)
    assert {"geometry", "alignment@sft", "figures", "report"} <= want
    assert edited_stages(root, tmp_path) == want


def test_a_new_registry_entry_re_runs_no_existing_methods_training(tmp_path):
    """A loss added the documented way (one module in registry/, its section in params.yaml, its name in
    ``methods``) validates, gets its own stages, and `dvc status` names exactly those and the stages over every
    method (those that list ``methods`` or the registry folder): no existing method's train@, lr_sweep@,
    alignment@ or evaluate@ stage, nor train_lr_matched, nor anything upstream of training."""
    root = copy_repo(tmp_path / "clone")
    sft = (root / REGISTRY_DIR / "sft.py").read_text()
    entry = 'METHOD = Method("sft", SFT, "all", loss=batch_loss, paper=1, family=True)'
    assert entry in sft
    (root / REGISTRY_DIR / "halfsft.py").write_text(
        sft.replace('"""SFT:', '"""Half SFT (a test\'s new method):').replace(
            "return sequence_nll(logp, mask).sum() / normaliser", "return 0.5 * sequence_nll(logp, mask).sum() / normaliser")
        .replace(entry, 'METHOD = Method("halfsft", SFT, "all", loss=batch_loss)'))
    params = root / "params.yaml"
    text = params.read_text()
    params.write_text(text.replace("  - dpo\n", "  - dpo\n  - halfsft\n", 1) + "halfsft:\n  lr: 1.0e-4\n")
    check = "from weightspace import config; p = config.load('params.yaml'); print(p.methods[-1], p.halfsft.lr)"
    assert run(["python", "-c", check], root, tmp_path,
               extra_env={"PYTHONPATH": str(root / "src")}).stdout.split() == ["halfsft", "0.0001"]
    over_all = {name for name, s in rendered().items() if "methods" in s["params"] or REGISTRY_DIR in s["deps"]}
    assert {"geometry", "report"} <= over_all and not {s for s in over_all if s.split("@")[0] in TRAINING}
    new = {f"{kind}@halfsft" for kind in ("train", "alignment", "lr_sweep", "evaluate")}
    edited = edited_stages(root, tmp_path)
    assert edited - new == over_all, sorted(edited - new ^ over_all)
    assert "train@halfsft" in edited


def covers(listed: str, key: str) -> bool:
    return key == listed or key.startswith(listed + ".")


# listed params the plumbing run's stages never read, because only another branch reads them: the api teacher
# (checked below on the paper profile), the LR sweep when controls.lr_sweep is not empty (test_pipeline.py's sweep
# test trains it)
OTHER_PROFILES = {"teacher": {"rollouts.generation.openai"}, "lr_sweep": {"train", "threads"}}


def read_by_stage(module: str, params: str, args: list[str], tmp) -> list[str]:
    log = tmp / "read.jsonl"
    run(["python", "-m", module, "--params", params, *args], tmp, tmp, extra_env=traced(log))
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
    process read (``tests/tracing/``): every key read is under a listed param, and every listed param was read."""
    root, folder = plumbing
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    by_args = {}
    for name, stage in lock.items():
        tokens = shlex.split(stage["cmd"])
        by_args[tuple(tokens[tokens.index("-m") + 1:])] = name  # the module and its arguments
    read: dict[str, set[str]] = {}
    fetched: dict[str, set[str]] = {}
    for line in (folder / PARAMS_READ).read_text().splitlines():
        entry = json.loads(line)
        assert tuple(entry["argv"]) in by_args, f"no stage of dvc.lock runs {entry['argv']}"
        read.setdefault(by_args[tuple(entry["argv"])], set()).update(entry["read"])
        fetched.setdefault(by_args[tuple(entry["argv"])], set()).update(entry["entries"])
    # the registry modules each stage lists: its own method's (a training stage: exactly the entry it fetched), or
    # the folder alone where it reads the entries of several methods, or none where it fetches none
    wrong = []
    for name, got in sorted(fetched.items()):
        deps = {d["path"] for d in lock[name]["deps"]}
        own = {d.removeprefix(REGISTRY_DIR + "/").removesuffix(".py") for d in deps
               if d.startswith(REGISTRY_DIR + "/") and d.removeprefix(REGISTRY_DIR + "/")[0] != "_"}
        if REGISTRY_DIR in deps and (own or len(got) < 2) or REGISTRY_DIR not in deps and got != own:
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
