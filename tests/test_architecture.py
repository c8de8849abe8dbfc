"""The house plan holds: no import circles, no cross-module private names, data flowing one way.

Read from the source with `ast` (nothing is imported), so the checks see
imports inside functions too:

- no module imports another module's ``_private`` name, nor reads one as an
  attribute of an imported module (helpers shared between modules are public
  names inside ``_``-prefixed modules);
- the modules of the package import each other without a circle;
- each part of the package imports only from the parts below it in the
  pipeline (`ALLOWED`): images and positions -> PSF -> stamps and features ->
  network -> columns, with simulation, training, evaluation and the command
  line on top.
"""

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "astro_stargal"

#: The foundation every part may use: warnings, flags, instrument figures, file helpers.
BASE = {
    "astro_stargal",
    "astro_stargal._columns",
    "astro_stargal._files",
    "astro_stargal._version",
    "astro_stargal.exceptions",
    "astro_stargal.flags",
    "astro_stargal.instrument",
}

#: Part of the package -> the parts it may import (besides itself and `BASE`).
ALLOWED = {
    "astro_stargal.io": set(),
    "astro_stargal.psf": set(),
    "astro_stargal.pipeline": {"astro_stargal.io", "astro_stargal.psf"},
    "astro_stargal.models": set(),
    "astro_stargal.simulate": set(),
    "astro_stargal.evaluation": {"astro_stargal.io", "astro_stargal.pipeline"},
    "astro_stargal.classify": {
        "astro_stargal.io",
        "astro_stargal.psf",
        "astro_stargal.pipeline",
        "astro_stargal.models",
    },
    "astro_stargal.training": {
        "astro_stargal.io",
        "astro_stargal.psf",
        "astro_stargal.pipeline",
        "astro_stargal.models",
        "astro_stargal.evaluation",
    },
    "astro_stargal.distributed": {"astro_stargal.classify", "astro_stargal.models"},
    "astro_stargal.demo": {"astro_stargal.classify", "astro_stargal.evaluation", "astro_stargal.psf"},
    "astro_stargal.cli": {
        "astro_stargal.classify",
        "astro_stargal.demo",
        "astro_stargal.distributed",
        "astro_stargal.evaluation",
        "astro_stargal.io",
        "astro_stargal.models",
        "astro_stargal.pipeline",
        "astro_stargal.psf",
        "astro_stargal.simulate",
        "astro_stargal.training",
    },
    "astro_stargal.data": set(),
    "astro_stargal.__main__": {"astro_stargal.cli"},
}


def _module_name(path):
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    return {_module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


MODULES = _modules()


def _is_package(name):
    return (PACKAGE_ROOT.parent / name.replace(".", "/") / "__init__.py").exists()


def _absolute(module, node):
    """The absolute module named by an ``ImportFrom`` node inside ``module``."""
    if node.level == 0:
        return node.module
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module):
    """Yield ``(imported module, imported name or None, line)`` for every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            for alias in node.names:
                yield source, alias.name, node.lineno


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _targets(module):
    """The package modules that ``module`` imports (a ``from pkg import submodule`` counts as the submodule)."""
    targets = set()
    for source, name, _ in _imports(module):
        if not source.startswith("astro_stargal"):
            continue
        submodule = f"{source}.{name}" if name else None
        targets.add(submodule if submodule in MODULES else source)
    return targets


def _part(module):
    """The part of the package a module belongs to: its first-level subpackage or top-level module."""
    return ".".join(module.split(".")[:2])


def test_no_module_imports_another_modules_private_name():
    offences = []
    for module in MODULES:
        imported_modules = {}
        for source, name, line in _imports(module):
            if not source.startswith("astro_stargal"):
                continue
            submodule = f"{source}.{name}" if name else None
            if name and _private(name) and submodule not in MODULES:
                offences.append(f"{module}:{line} imports {source}.{name}")
            if name and submodule in MODULES:
                if _private(name) and not module.startswith(source):
                    offences.append(
                        f"{module}:{line} imports the private module {submodule} of another package"
                    )
                imported_modules[name] = submodule
        tree = ast.parse(MODULES[module].read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in imported_modules
                and _private(node.attr)
            ):
                offences.append(f"{module}:{node.lineno} reads {imported_modules[node.value.id]}.{node.attr}")
    assert not offences, "\n".join(offences)


def test_modules_import_each_other_without_a_circle():
    graph = {module: _targets(module) & set(MODULES) for module in MODULES}
    circles = [component for component in _strongly_connected(graph) if len(component) > 1]
    circles += [[module] for module, targets in graph.items() if module in targets]
    assert not circles, f"import circles: {circles}"


def test_each_part_imports_only_the_parts_below_it():
    offences = []
    for module in MODULES:
        part = _part(module)
        if part in BASE:
            allowed = BASE
        else:
            allowed = BASE | ALLOWED[part] | {part}
        for target in _targets(module):
            if target in MODULES and _part(target) not in allowed and target not in allowed:
                offences.append(f"{module} imports {target} ({_part(target)} is not below {part})")
    assert not offences, "\n".join(offences)


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_every_part_of_the_plan_exists(part):
    assert part in MODULES, f"{part} is in the plan but not in the package"


def test_every_module_belongs_to_a_part_of_the_plan():
    unplanned = sorted({_part(module) for module in MODULES} - set(ALLOWED) - BASE)
    assert not unplanned, f"parts missing from ALLOWED in this test: {unplanned}"


def _strongly_connected(graph):
    """Tarjan's strongly connected components of ``graph`` (node -> set of nodes)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_every_path_the_architecture_page_names_exists():
    """The developer guide's answers to "where does this change go" point at real files and folders."""
    import re

    page = (PACKAGE_ROOT.parent / "docs" / "dev" / "architecture.md").read_text()
    named = set(re.findall(r"`([\w./]+/[\w./]*|[\w/]+\.py)`", page))
    assert len(named) > 20
    missing = []
    for path in sorted(named):
        candidates = [PACKAGE_ROOT.parent / path, PACKAGE_ROOT / path]
        if not any(candidate.exists() for candidate in candidates):
            missing.append(path)
    assert not missing, f"the architecture page names paths that do not exist: {missing}"
