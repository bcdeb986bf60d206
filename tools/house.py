"""The package's structure counted from its imports: modules, rooms (the top-level entries of
``src/weightspace/``: a module or a folder), import arrows between rooms, and the arrows that run back up.

An arrow A -> B means some module of room A imports some module of room B (at module level or inside a
function; ``if TYPE_CHECKING:`` blocks never run and are not counted). An arrow *runs back up* when it lies on
a cycle of rooms: A reaches B and B reaches A, so no order of the rooms puts every user above what it uses.

    python tools/house.py            # the counts
    python tools/house.py --arrows   # and every arrow, the ones that run back up marked
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "weightspace"


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """``weightspace.a.b`` -> its file (a package as its ``__init__.py``)."""
    out = {}
    for p in sorted(package.rglob("*.py")):
        parts = ["weightspace", *p.relative_to(package).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


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


def imports(name: str, mods: dict[str, Path]) -> set[str]:
    """The ``weightspace`` modules that module ``name`` imports (absolute or relative, anywhere in it)."""
    path = mods[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in mods}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            subs = {f"{base}.{a.name}" for a in node.names} & mods.keys()
            found |= subs if len(subs) == len(node.names) else ({base} & mods.keys()) | subs
    return found - {name}


def room(name: str) -> str:
    """The top-level entry of ``src/weightspace/`` that holds module ``name``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def reach(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out = {}
    for v in graph:
        seen, todo = set(), list(graph[v])
        while todo:
            w = todo.pop()
            if w not in seen:
                seen.add(w)
                todo += graph.get(w, ())
        out[v] = seen
    return out


def house(package: Path = PACKAGE) -> dict:
    mods = modules(package)
    arrows: set[tuple[str, str]] = set()
    for m in mods:
        for t in imports(m, mods):
            if room(m) != room(t):
                arrows.add((room(m), room(t)))
    rooms = sorted({room(m) for m in mods})
    graph = {r: {b for a, b in arrows if a == r} for r in rooms}
    reachable = reach(graph)
    back = sorted((a, b) for a, b in arrows if a in reachable[b])
    return {"modules": len(mods), "folders": sum(1 for p in package.rglob("*") if p.is_dir()
                                                 and p.name != "__pycache__") + 1,
            "rooms": len(rooms), "arrows": sorted(arrows), "back": back}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arrows", action="store_true", help="list every arrow")
    ap.add_argument("--package", default=str(PACKAGE))
    a = ap.parse_args()
    h = house(Path(a.package))
    print(f"modules {h['modules']}, folders {h['folders']}, rooms {h['rooms']}, arrows between rooms "
          f"{len(h['arrows'])}, of which run back up {len(h['back'])}")
    if a.arrows:
        for x, y in h["arrows"]:
            print(f"  {x} -> {y}{'   (back up)' if (x, y) in h['back'] else ''}")


if __name__ == "__main__":
    main()
