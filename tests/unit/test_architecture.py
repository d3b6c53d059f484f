"""The package's shape: no import cycles, no private names across modules, no hidden module state.

Reads the source with `ast` (nothing is imported), so a cycle hidden inside a function body is
found as well as one at the top of a module. Imports under `if TYPE_CHECKING:` are for type
checkers only and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PKG = SRC / "portdoctor"

# Module-level mutable values that are mutated after import, each with its reason.
STATE_ALLOWED: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(path: Path, name: str, modules: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every runtime import of portdoctor code."""
    tree = ast.parse(path.read_text())
    out: list[tuple[str, str | None, int]] = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                out.extend((a.name, None, child.lineno) for a in child.names if a.name.startswith("portdoctor"))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([child.module] if child.module else []))
                if not base.startswith("portdoctor"):
                    continue
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    if sub in modules:  # `from portdoctor.checks import facts`: a module
                        out.append((sub, None, child.lineno))
                    else:
                        out.append((base, a.name, child.lineno))
            visit(child)

    visit(tree)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, _obj, _line in _imports(path, name, modules):
            # importing a submodule runs its package first; that is not an edge of ours
            if target != name and target in modules and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
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
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_names_across_modules() -> None:
    modules = _modules()
    bad = []
    for name, path in modules.items():
        for target, obj, line in _imports(path, name, modules):
            if obj is not None and obj.startswith("_") and not obj.startswith("__") and target != name:
                bad.append(f"{path.relative_to(SRC)}:{line}: {obj} from {target}")
    assert bad == []


_MUTATORS = {"append", "extend", "update", "clear", "add", "pop", "setdefault", "insert", "remove", "discard",
             "popitem", "__setitem__"}


def _module_state(path: Path) -> list[str]:
    """Module-level lists, dicts and sets that some code of the module mutates."""
    tree = ast.parse(path.read_text())
    mutable: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) and node.value is not None else []
        value = getattr(node, "value", None)
        if isinstance(value, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)) or (
                isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                and value.func.id in ("list", "dict", "set", "defaultdict", "OrderedDict", "deque")):
            mutable |= {t.id for t in targets if isinstance(t, ast.Name)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _MUTATORS:
            if isinstance(node.func.value, ast.Name) and node.func.value.id in mutable:
                found.add(node.func.value.id)
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            for t in getattr(node, "targets", None) or [getattr(node, "target", None)]:
                if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id in mutable:
                    found.add(t.value.id)
        if isinstance(node, ast.Global):
            found |= set(node.names)
    return sorted(found)


def test_no_module_level_mutable_state() -> None:
    found = {f"{name}.{var}" for name, path in _modules().items() for var in _module_state(path)}
    assert sorted(found - set(STATE_ALLOWED)) == []
    assert sorted(set(STATE_ALLOWED) - found) == [], "an allowed entry no longer exists: drop it"


def test_the_state_finder_finds_a_cache(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("_cache = {}\nSEEN: list = []\nTABLE = {'a': 1}\n\ndef f(k):\n    _cache[k] = 1\n"
                   "    SEEN.append(k)\n    return TABLE['a']\n")
    assert _module_state(src) == ["SEEN", "_cache"]
