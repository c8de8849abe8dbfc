"""Every public function and class has a numpydoc docstring with the sections a user needs.

"Public" is what a module lists in ``__all__``, for every module and subpackage
of the package whose dotted name has no part starting with an underscore. Each
object is checked once: in the public module that defines it, or in the public
subpackage whose private module defines it (``astro_stargal.io.read_images``
is written in ``astro_stargal.io._images``); re-exports such as
``astro_stargal.classify_sources`` are checked where they are written. Required sections:

- ``Parameters`` when the function (or the class's ``__init__``) takes
  arguments; ``Attributes`` (or ``Parameters``) for a dataclass;
- ``Returns`` when the function returns a value, ``Yields`` when it yields;
- ``Examples`` always.

Gaps that are known and owned by someone else are listed in `KNOWN_GAPS` and
expected to fail (strictly: once a gap is filled, its entry must go).
"""

import ast
import dataclasses
import enum
import importlib
import inspect
import pkgutil
import re
import textwrap

import pytest

import astro_stargal

SECTION = re.compile(r"^([A-Z][A-Za-z ]+)\n-{3,}[ \t]*$", re.MULTILINE)

#: (module, name) -> the sections it lacks today, in modules whose owners fill them in.
KNOWN_GAPS = {}


def _public_modules():
    names = ["astro_stargal"]
    for info in pkgutil.walk_packages(astro_stargal.__path__, prefix="astro_stargal."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def _defined_in(obj, module_name):
    """True if ``obj`` is written in ``module_name`` or in one of its private submodules."""
    defined = getattr(obj, "__module__", module_name) or module_name
    return defined == module_name or defined.startswith(f"{module_name}._")


def _public_objects():
    cases = []
    for module_name in _public_modules():
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            cases.append(
                pytest.param(
                    module_name,
                    None,
                    marks=pytest.mark.skip(reason=f"cannot import {module_name}: {error}"),
                    id=module_name,
                )
            )
            continue
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not callable(obj) or not _defined_in(obj, module_name):
                continue
            marks = []
            if (module_name, name) in KNOWN_GAPS:
                missing = ", ".join(KNOWN_GAPS[module_name, name])
                marks.append(pytest.mark.xfail(strict=True, reason=f"known docstring gap: no {missing}"))
            cases.append(pytest.param(module_name, name, marks=marks, id=f"{module_name}.{name}"))
    return cases


def _sections(docstring):
    return set(SECTION.findall(docstring))


def _own_statements(function_node):
    """Walk a function's body without entering nested functions, lambdas or classes."""
    stack = list(function_node.body)
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                stack.append(child)


def _returns_and_yields(function):
    source = textwrap.dedent(inspect.getsource(inspect.unwrap(function)))
    node = ast.parse(source).body[0]
    returns = yields = False
    for statement in _own_statements(node):
        if isinstance(statement, ast.Return) and statement.value is not None:
            is_none = isinstance(statement.value, ast.Constant) and statement.value.value is None
            returns = returns or not is_none
        if isinstance(statement, (ast.Yield, ast.YieldFrom)):
            yields = True
    return returns, yields


def _takes_arguments(function):
    parameters = inspect.signature(function).parameters
    return any(name not in ("self", "cls") for name in parameters)


def required_sections(obj):
    """The numpydoc sections that ``obj``'s docstring must have."""
    required = {"Examples"}
    if inspect.isclass(obj):
        if dataclasses.is_dataclass(obj):
            required.add("Attributes|Parameters")
        elif (
            not issubclass(obj, (enum.Enum, Warning, Exception))
            and "__init__" in vars(obj)
            and _takes_arguments(obj.__init__)
        ):
            required.add("Parameters")
        return required
    if _takes_arguments(obj):
        required.add("Parameters")
    returns, yields = _returns_and_yields(obj)
    if returns:
        required.add("Returns")
    if yields:
        required.add("Yields")
    return required


def missing_sections(obj):
    present = _sections(inspect.getdoc(obj) or "")
    return sorted(
        section
        for section in required_sections(obj)
        if not any(alternative in present for alternative in section.split("|"))
    )


@pytest.mark.parametrize(("module_name", "name"), _public_objects())
def test_public_object_has_numpydoc_sections(module_name, name):
    obj = getattr(importlib.import_module(module_name), name)
    assert inspect.getdoc(obj), f"{module_name}.{name} has no docstring"
    missing = missing_sections(obj)
    assert not missing, f"{module_name}.{name}: docstring lacks {', '.join(missing)}"
