"""The shape of the package, read from its source: no import cycles, imports only in the
allowed direction, and light imports that stay light (the controller loads neither the TCP
server, the remote client nor the conformance kit; the driver contract does not load JAX).

The import graph counts every ``import`` statement of every module, at module level and
inside functions, except the deprecated aliases named in :data:`SHIMS`.
"""

from __future__ import annotations

import ast
import itertools
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

import analog_hep

PKG = Path(analog_hep.__file__).parent
ROOT = PKG.name  # "analog_hep"

# Which subpackage may import which (besides the top-level modules, see below): the data
# flows spec -> physics -> emulator -> drivers -> hep -> studies -> cli; the controller
# (hep) sees a chip only through the driver contract, never the emulator or the physics;
# the conformance kit sits above the emulator and the controller, which it checks a driver
# against. A new edge is added here only if the table stays acyclic (a test checks it).
ALLOWED: dict[str, frozenset[str]] = {
    "spec": frozenset(),
    "physics": frozenset({"spec"}),
    "drivers": frozenset(),
    "emulator": frozenset({"drivers", "physics", "spec"}),
    "hep": frozenset({"drivers"}),
    "data": frozenset(),
    "conformance": frozenset({"drivers", "emulator", "hep", "spec"}),
    "studies": frozenset({"data", "drivers", "emulator", "hep", "spec"}),
    "cli": frozenset({"conformance", "data", "drivers", "physics", "spec", "studies"}),
}
# The top-level modules (``analog_hep/__init__.py``, ``errors.py``, ``_numerics.py``, ...)
# are the foundation: any subpackage may import them and they import no subpackage.
# ``__main__`` is the entry point: it imports the command line only.
ENTRY_POINT = {"__main__": frozenset({"cli"})}

# Deprecated aliases that reach up from ``drivers`` to the conformance kit. None runs when
# ``analog_hep.drivers`` is imported: the package and ``drivers._conformance`` import the
# kit in a PEP 562 ``__getattr__`` on first use of an old name, and nothing imports
# ``drivers.conformance_plugin`` but a test that names it. (module, scope, imported part)
SHIMS: frozenset[tuple[str, str, str]] = frozenset(
    {
        (f"{ROOT}.drivers", "__getattr__", "conformance"),
        (f"{ROOT}.drivers._conformance", "__getattr__", "conformance"),
        (f"{ROOT}.drivers.conformance_plugin", "<module>", "conformance"),
    }
)


@dataclass(frozen=True)
class Import:
    """One imported module: where (``module``, and ``scope``: ``<module>`` or the enclosing
    top-level function or class), what (``target``, a module of the package or outside
    it), and whether it runs when ``module`` is imported (``at_import``)."""

    module: str
    scope: str
    target: str
    at_import: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _targets(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    """Modules an import statement imports: ``from P import x`` is module ``P.x`` when that
    is a module of the package, else ``P``; relative imports resolved."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        here = module.split(".")
        if MODULES[module].name != "__init__.py":
            here = here[:-1]
        here = here[: len(here) - node.level + 1]
        base = ".".join(here + ([node.module] if node.module else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def _imports_of(module: str) -> Iterable[Import]:
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))

    def walk(node: ast.AST, scope: str, in_function: bool) -> Iterable[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in _targets(child, module):
                    yield Import(module, scope, target, not in_function)
            inner_scope = scope
            if scope == "<module>" and isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
            ):
                inner_scope = child.name
            is_function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from walk(child, inner_scope, in_function or is_function)

    yield from walk(tree, "<module>", False)


IMPORTS: list[Import] = [imp for m in MODULES for imp in _imports_of(m)]


def _part(module: str) -> str | None:
    """The part of the package ``module`` belongs to: a subpackage (``drivers``), a
    top-level module (``errors``), or the package itself (``analog_hep``); ``None`` when it
    is outside the package."""
    parts = module.split(".")
    if parts[0] != ROOT:
        return None
    if len(parts) == 1 or f"{ROOT}.{parts[1]}" not in MODULES:
        return ROOT  # the package's own __init__ (``from .. import __version__``)
    return parts[1]


SUBPACKAGES = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
FOUNDATION = {p for m in MODULES if (p := _part(m)) not in SUBPACKAGES and p not in ENTRY_POINT}


def _is_shim(imp: Import) -> bool:
    return (imp.module, imp.scope, _part(imp.target)) in SHIMS


def _part_graph() -> dict[tuple[str, str], list[Import]]:
    """Edges between different parts of the package, each with the imports behind it."""
    edges: dict[tuple[str, str], list[Import]] = {}
    for imp in IMPORTS:
        src, dst = _part(imp.module), _part(imp.target)
        if src is None or dst is None or src == dst or _is_shim(imp):
            continue
        edges.setdefault((src, dst), []).append(imp)
    return edges


def _find_cycle(edges: Iterable[tuple[str, str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges`` (as its nodes, first repeated last), or
    ``None`` when it is acyclic."""
    succ: dict[str, list[str]] = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(succ.get(v, ())):
            if state.get(w) == 1:
                return [*path[path.index(w) :], w]
            if w not in state and (cycle := visit(w)):
                return cycle
        path.pop()
        state[v] = 2
        return None

    for v in sorted(succ):
        if v not in state and (cycle := visit(v)):
            return cycle
    return None


def _where(imports: Iterable[Import]) -> str:
    imp = next(iter(imports))
    when = "at import" if imp.at_import else "in a function"
    return f"{imp.module} ({imp.scope}, {when}) imports {imp.target}"


# -- (a) no import cycles ---------------------------------------------------------------------


def test_no_import_cycle_between_the_parts_of_the_package():
    """Module-level and function-level imports alike: a function-level import hides a cycle
    from the interpreter, not from the design."""
    edges = _part_graph()
    cycle = _find_cycle(edges)
    if cycle is not None:
        why = "; ".join(_where(edges[a, b]) for a, b in itertools.pairwise(cycle))
        pytest.fail(f"import cycle {' -> '.join(cycle)}: {why}")


def test_no_import_cycle_between_modules_at_import_time():
    """What the interpreter runs when a module is imported: no module waits for itself."""
    edges = {
        (imp.module, imp.target): [imp]
        for imp in IMPORTS
        if imp.at_import and imp.target in MODULES and imp.target != imp.module
    }
    cycle = _find_cycle(edges)
    assert cycle is None, "import cycle at import time " + " -> ".join(cycle)


def test_the_shims_are_the_named_deprecated_aliases():
    """Every exclusion of :data:`SHIMS` is still in the source (remove it with the alias),
    and every one imports the conformance kit, nothing else."""
    found = {(i.module, i.scope, _part(i.target)) for i in IMPORTS if _is_shim(i)}
    assert found == set(SHIMS)


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle([("a", "b"), ("b", "c"), ("c", "a")]) == ["a", "b", "c", "a"]
    assert _find_cycle([("a", "b"), ("b", "c"), ("a", "c")]) is None


# -- (b) the direction of imports -------------------------------------------------------------


def test_the_table_names_every_subpackage_and_is_acyclic():
    assert set(ALLOWED) == SUBPACKAGES, "add the new subpackage to ALLOWED"
    assert _find_cycle((a, b) for a, bs in ALLOWED.items() for b in bs) is None
    assert all(set(bs) <= SUBPACKAGES for bs in ALLOWED.values())


def _forbidden(edges: Mapping[tuple[str, str], list[Import]]) -> list[str]:
    bad = []
    for (src, dst), imports in sorted(edges.items()):
        if src in ALLOWED:
            ok = dst in ALLOWED[src] or dst in FOUNDATION
        elif src in ENTRY_POINT:
            ok = dst in ENTRY_POINT[src] or dst in FOUNDATION
        else:  # a top-level module
            ok = dst in FOUNDATION
        if not ok:
            bad.append(f"{src} -> {dst}: {_where(imports)}")
    return bad


def test_imports_go_only_in_the_allowed_direction():
    bad = _forbidden(_part_graph())
    assert not bad, "imports against the table ALLOWED:\n" + "\n".join(bad)


def test_the_direction_check_sees_a_wrong_import():
    """The checker catches the import this architecture exists to prevent."""
    wrong = Import(f"{ROOT}.hep._controller", "<module>", f"{ROOT}.emulator", True)
    assert _forbidden({("hep", "emulator"): [wrong]})
    assert _forbidden({("drivers", "conformance"): [wrong]})
    assert _forbidden({("errors", "spec"): [wrong]})


def test_the_controller_sees_a_chip_only_through_the_driver_contract():
    seen = {dst for (src, dst) in _part_graph() if src == "hep" and dst in SUBPACKAGES}
    assert seen <= {"drivers"}, seen


# -- (c, d) what an import loads ----------------------------------------------------------------


def _loaded_by(statement: str) -> set[str]:
    """Modules in ``sys.modules`` after ``statement`` in a fresh interpreter."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert res.returncode == 0, res.stderr
    return set(json.loads(res.stdout.strip().splitlines()[-1]))


NOT_FOR_THE_CONTROLLER = (
    f"{ROOT}.drivers._server",
    f"{ROOT}.drivers._remote",
    f"{ROOT}.conformance",
    f"{ROOT}.drivers._conformance",
    f"{ROOT}.drivers.conformance_plugin",
    f"{ROOT}.emulator",
    f"{ROOT}.physics",
)


def test_importing_the_controller_loads_no_server_client_or_kit():
    loaded = _loaded_by(f"import {ROOT}.hep")
    assert f"{ROOT}.hep" in loaded
    bad = sorted(m for m in loaded if m.startswith(NOT_FOR_THE_CONTROLLER))
    assert not bad, f"import {ROOT}.hep loads {bad}"


def test_importing_the_driver_contract_loads_no_jax():
    """A lab's driver package imports ``analog_hep.drivers``: the contract, not the
    emulator, its physics, the controller, the kit or JAX."""
    loaded = _loaded_by(f"import {ROOT}.drivers")
    heavy = (*NOT_FOR_THE_CONTROLLER, f"{ROOT}.hep", f"{ROOT}.studies")
    bad = sorted(m for m in loaded if m.split(".")[0] in ("jax", "equinox") or m.startswith(heavy))
    assert not bad, f"import {ROOT}.drivers loads {bad}"


def test_the_lazy_names_of_drivers_import_in_a_fresh_interpreter():
    loaded = _loaded_by(f"from {ROOT}.drivers import DriverServer, RemoteDriver, read_token_file")
    assert {f"{ROOT}.drivers._server", f"{ROOT}.drivers._remote"} <= loaded


def test_drivers_re_exports_the_validators_lazily():
    """``analog_hep.drivers.check_*`` are the validators of ``drivers.validate``, imported
    on first use."""
    if f"{ROOT}.drivers.validate" not in MODULES:
        pytest.skip("no drivers/validate.py")
    import analog_hep.drivers as drivers
    from analog_hep.drivers import validate

    names = [n for n in dir(validate) if n.startswith("check_")]
    assert names
    for name in names:
        assert getattr(drivers, name) is getattr(validate, name), name
