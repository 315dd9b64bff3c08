"""The package's layout as the README and ``stn/__init__.py`` describe it: imports flow one way
through the layers, no module reaches into another's private names, and functions stay short."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "stn"

#: The layers, in import order: each may import itself and the layers before it.
LAYERS = ("util", "method", "training", "tasks", "experiments", "tooling")

MAX_FUNCTION_LINES = 40
MAX_STN_LINES = 120


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {module_name(p): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


def stn_imports(tree: ast.Module) -> list[ast.ImportFrom | ast.Import]:
    """Every import of an ``stn`` module, at any depth (function-level imports included)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "stn":
            found.append(node)
        elif isinstance(node, ast.Import) and any(
            a.name.split(".")[0] == "stn" for a in node.names
        ):
            found.append(node)
    return found


def imported_modules(tree: ast.Module) -> set[str]:
    """The ``stn`` modules a module imports (``from stn.a import b`` counts ``stn.a.b`` if it
    is a module, else ``stn.a``)."""
    modules = set()
    for node in stn_imports(tree):
        if isinstance(node, ast.Import):
            modules.update(a.name for a in node.names if a.name.startswith("stn"))
            continue
        for alias in node.names:
            sub = f"{node.module}.{alias.name}"
            modules.add(sub if sub in SOURCES else node.module)
    return modules


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else None


def test_every_subpackage_is_a_layer():
    assert {m.split(".")[1] for m in SOURCES if "." in m} == set(LAYERS)


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if "." in m))
def test_imports_flow_one_way(module):
    later = {
        target
        for target in imported_modules(SOURCES[module])
        if layer(target) is None or layer(target) > layer(module)
    }
    assert not later, f"{module} imports {sorted(later)}, which are not before it in {LAYERS}"


def test_no_import_cycles():
    graph = {m: imported_modules(t) & SOURCES.keys() for m, t in SOURCES.items() if "." in m}
    done, active = set(), []

    def visit(module: str) -> None:
        if module in active:
            cycle = active[active.index(module) :] + [module]
            pytest.fail(f"import cycle: {' -> '.join(cycle)}")
        if module in done:
            return
        active.append(module)
        for target in graph.get(module, ()):
            visit(target)
        active.pop()
        done.add(module)

    for module in graph:
        visit(module)


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_no_module_uses_another_modules_private_names(module):
    tree = SOURCES[module]
    aliases = {}  # a name bound to an imported stn module
    private = []
    for node in stn_imports(tree):
        if isinstance(node, ast.ImportFrom):
            private += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            for a in node.names:
                if f"{node.module}.{a.name}" in SOURCES:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        else:
            aliases.update({(a.asname or a.name).split(".")[0]: a.name for a in node.names})
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
        ):
            private.append(f"{aliases[node.value.id]}.{node.attr}")
    assert not private, f"{module} uses private names of other modules: {private}"


def functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_no_function_is_longer_than_forty_lines(module):
    long = {
        f.name: f.end_lineno - f.lineno + 1
        for f in functions(SOURCES[module])
        if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES
    }
    assert not long, f"{module}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_stn_holds_state_and_steps_in_about_a_third_of_its_old_size():
    (stn,) = [n for n in SOURCES["stn.method.stn"].body if getattr(n, "name", None) == "STN"]
    assert stn.end_lineno - stn.lineno + 1 <= MAX_STN_LINES
    methods = {f.name for f in stn.body if isinstance(f, ast.FunctionDef)}
    assert {"weight_step", "hyper_step", "evaluate", "reset"} <= methods


def test_the_checks_see_a_violation():
    """The checks above can fail: a planted backward import, private use and long function."""
    planted = ast.parse(
        "from stn.tooling.verify import _MISSING\n"
        "def long():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    )
    assert imported_modules(planted) == {"stn.tooling.verify"}
    assert layer("stn.tooling.verify") > layer("stn.method.stn")
    assert any(f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES for f in functions(planted))
    assert [a.name for n in stn_imports(planted) for a in n.names] == ["_MISSING"]
