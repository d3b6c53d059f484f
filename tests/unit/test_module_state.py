"""No hidden state: no module-level list, dict or set of src/portdoctor that code mutates.

A module-level cache makes a "pure" check or collector depend on what ran before in the same
process (`watch` runs thousands of diagnoses in one). Facts one collector derives for another
travel on the Request (`Request.derive`, fresh in each collect()). The source is read with
`ast`; nothing is imported. An exception needs an entry in ALLOWED with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "src" / "portdoctor"

ALLOWED: dict[str, str] = {
    "portdoctor.checks.firewall._cache": "removed on main by the lead",
    "portdoctor.checks.firewall._evaluated": "removed on main by the lead",
    "portdoctor.services._BY_NAME": "a constant table filled once at import from SERVICES, never after",
}

_CONTAINERS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
_FACTORIES = {"list", "dict", "set", "defaultdict", "OrderedDict", "deque", "Counter"}
_MUTATORS = {"append", "extend", "insert", "remove", "pop", "popitem", "clear", "update", "setdefault",
             "add", "discard", "difference_update", "intersection_update", "symmetric_difference_update",
             "appendleft", "extendleft", "sort", "reverse", "__setitem__", "__delitem__"}


def _module(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_container(value: ast.AST | None) -> bool:
    if isinstance(value, _CONTAINERS):
        return True
    if isinstance(value, ast.Call):
        f = value.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        return name in _FACTORIES
    return False


def _root_name(node: ast.AST) -> str | None:
    """The name at the bottom of x, x[k], x[k][j], x.attr[k]: what a mutation changes."""
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def mutated_globals(source: str) -> list[str]:
    """Module-level mutable containers of `source` that some statement mutates, sorted."""
    tree = ast.parse(source)
    containers: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and _is_container(node.value):
            containers |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and _is_container(node.value) and isinstance(node.target, ast.Name):
            containers.add(node.target.id)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found |= set(node.names)  # rebinding a module name from a function is state too
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _MUTATORS:
            name = _root_name(node.func.value)
            if name in containers:
                found.add(name)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for t in targets:
                if isinstance(t, (ast.Subscript, ast.Attribute)) and _root_name(t) in containers:
                    found.add(_root_name(t))
                elif isinstance(node, ast.AugAssign) and isinstance(t, ast.Name) and t.id in containers:
                    found.add(t.id)
    return sorted(found)


def test_no_module_level_mutable_state() -> None:
    found = []
    for path in sorted(PKG.rglob("*.py")):
        found += [f"{_module(path)}.{name}" for name in mutated_globals(path.read_text())]
    assert [x for x in found if x not in ALLOWED] == []
    assert sorted(set(ALLOWED) - set(found)) == [], "an allowed entry no longer exists: drop it"


def test_the_walker_finds_each_kind_of_mutation() -> None:
    src = ("_a = {}\n_b: list = []\n_c = set()\n_d = {}\n_e = []\n_f = {}\nTABLE = {'k': 1}\nn = 0\n"
           "def f(k):\n    _a[k] = 1\n    _b.append(k)\n    _c.add(k)\n    _d[k][0] = 2\n    _e += [k]\n"
           "    del _f[k]\n    global n\n    n += 1\n    return TABLE['k']\n")
    assert mutated_globals(src) == ["_a", "_b", "_c", "_d", "_e", "_f", "n"]


def test_a_per_call_container_is_no_state() -> None:
    src = "TABLE = ('a',)\ndef f():\n    seen = {}\n    seen['x'] = 1\n    return seen\n"
    assert mutated_globals(src) == []
