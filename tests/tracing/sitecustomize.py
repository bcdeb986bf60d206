"""Test-only: which params keys and registry entries a stage reads (``tests/test_graph.py``).

Python imports ``sitecustomize`` at start-up from the first folder of ``sys.path`` that holds one; the tests
put this folder on ``PYTHONPATH`` with ``$WEIGHTSPACE_PARAMS_READ`` naming a file (``conftest.traced``). Then,
once ``weightspace.stages.common`` is imported, its ``parse`` is wrapped: the params it returns are traced, every
field of a ``Section`` that code reads is recorded as its dotted key (a copy, ``model_copy``, as the key of its
original), and so is every entry ``registry.get`` hands out. At exit the process appends one JSON line to the
file: its module and arguments, the keys read and the entries fetched. ``registry.get`` is traced from the moment the
registry is imported (an entry fetched at import counts). Nothing here is imported by the package.
"""

import os

if os.environ.get("WEIGHTSPACE_PARAMS_READ"):
    import importlib.abc
    import importlib.util
    import sys

    _USED: set[str] = set()  # the registry entries ``registry.get`` handed out
    _HOOKS = {}  # module name -> what to do right after it is executed

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in _HOOKS:
                return None
            hook = _HOOKS.pop(name)
            sys.meta_path.remove(self)  # find the module the ordinary way
            try:
                spec = importlib.util.find_spec(name)
            finally:
                if _HOOKS:
                    sys.meta_path.insert(0, self)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                hook(module)

            spec.loader.exec_module = exec_module
            return spec

    def _trace_get(registry) -> None:
        """Record every entry ``get`` hands out from the moment the registry exists (a module may fetch entries
        at import, before the stage parses its params)."""
        get = registry.get

        def traced_get(name):
            _USED.add(name)
            return get(name)

        registry.get = traced_get

    _HOOKS.update({"weightspace.registry": _trace_get, "weightspace.stages.common": lambda m: _install(m)})
    sys.meta_path.insert(0, _Finder())


def _install(common) -> None:
    import atexit
    import json
    import sys

    from weightspace.core import schema

    read: set[str] = set()
    paths: dict[int, str] = {}  # id of a traced section -> its dotted key
    kept: list = []  # every traced section, so that no id is reused by another object while the process runs

    def register(obj, path: str) -> None:
        if isinstance(obj, schema.Section):
            paths[id(obj)] = path
            kept.append(obj)
            for name in type(obj).model_fields:
                register(obj.__dict__[name], f"{path}.{name}" if path else name)
        elif isinstance(obj, dict):
            for k, v in obj.items():
                register(v, f"{path}.{k}")

    def getattribute(self, name):
        value = object.__getattribute__(self, name)
        if name in type(self).model_fields and id(self) in paths:
            path = paths[id(self)]
            read.add(f"{path}.{name}" if path else name)
        return value

    copy = schema.Section.model_copy

    def model_copy(self, *args, **kwargs):
        new = copy(self, *args, **kwargs)
        if id(self) in paths:
            register(new, paths[id(self)])  # a copy (e.g. with another step count) is read as the same key
        return new

    parse = common.parse

    def traced_parse(*args, **kwargs):
        a, params = parse(*args, **kwargs)
        register(params, "")
        return a, params

    schema.Section.__getattribute__ = getattribute
    schema.Section.model_copy = model_copy
    common.parse = traced_parse

    def write() -> None:
        keys = sorted(read)  # without those only read on the way to a deeper one (``train`` for ``train.steps``)
        spec = getattr(sys.modules["__main__"], "__spec__", None)  # python -m <module>: the stage's module
        argv = [getattr(spec, "name", sys.argv[0]), *sys.argv[1:]]
        with open(os.environ["WEIGHTSPACE_PARAMS_READ"], "a") as f:
            f.write(json.dumps({"argv": argv, "read": [k for k in keys if not any(o.startswith(k + ".") for o in keys)],
                                "entries": sorted(_USED)}) + "\n")

    atexit.register(write)
