"""The API reference in docs/api/*.rst covers the library, without building it.

CI builds the pages with ``sphinx-build -W`` (.ci/run); that catches broken docstrings but not
omissions. These checks catch omissions, cheaply and without Sphinx:

* every module named by an ``automodule`` directive imports;
* every public module under ``ebm_ppl/`` is documented, or listed in a ``.. TO ADD:`` comment of
  docs/api/*.rst (modules still being written);
* every name in a documented package's ``__all__`` is in that page's ``autosummary`` table of
  re-exports, and the table's entry points at a module documented with ``:members:`` whose
  ``__all__`` contains the name (or at an object documented by its own ``auto*`` directive), so it
  has an entry of its own in the reference;
* every constant in a documented module's ``__all__`` has a docstring (a string literal right after
  its assignment): Sphinx leaves out module-level data without one, even with ``:undoc-members:``.
"""

import ast
import importlib
import inspect
import pathlib
import re
import sys
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"
PAGES = sorted(API.glob("*.rst"))

_DIRECTIVE = re.compile(r"^\.\. (auto\w+)::(?: (\S+))?[ \t]*$")
_OPTION = re.compile(r"^   :([\w-]+):")
_ENTRY = re.compile(r"^   (~?[\w.]+)[ \t]*$")
_MODULE_NAME = re.compile(r"^   (ebm_ppl(?:\.\w+)*)[ \t]*$")


def _parse(path):
    """The ``(kind, target, options, entries, package)`` directives and TO ADD modules of a page."""
    lines = path.read_text().splitlines()
    directives, pending = [], []
    package = None  # the page's first automodule: autosummary entries are relative to it
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(".. TO ADD"):
            i += 1
            while i < len(lines) and (lines[i].startswith("   ") or not lines[i].strip()):
                match = _MODULE_NAME.match(lines[i])
                if match:
                    pending.append(match.group(1))
                i += 1
            continue
        match = _DIRECTIVE.match(line)
        i += 1
        if not match:
            continue
        kind, target = match.groups()
        options, entries = set(), []
        while i < len(lines) and (lines[i].startswith("   ") or not lines[i].strip()):
            option = _OPTION.match(lines[i])
            entry = _ENTRY.match(lines[i])
            if option:
                options.add(option.group(1))
            elif entry:
                entries.append(entry.group(1).lstrip("~"))
            i += 1
        if kind == "automodule" and package is None:
            package = target
        directives.append((kind, target, options, entries, package))
    return directives, pending


_PARSED = [_parse(page) for page in PAGES]
DIRECTIVES = [d for directives, _ in _PARSED for d in directives]
PENDING = sorted({m for _, pending in _PARSED for m in pending})
MODULES = sorted({target for kind, target, *_ in DIRECTIVES if kind == "automodule"})
WITH_MEMBERS = {
    t for kind, t, options, *_ in DIRECTIVES if kind == "automodule" and "members" in options
}
EXPLICIT = {t for kind, t, *_ in DIRECTIVES if kind not in ("automodule", "autosummary")}
TABLES = {}  # package -> autosummary entries, as full dotted names
for kind, _, _, entries, package in DIRECTIVES:
    if kind == "autosummary":  # entries are relative to the page's package, or absolute
        TABLES.setdefault(package, []).extend(
            entry if entry.startswith("ebm_ppl.") else f"{package}.{entry}" for entry in entries
        )


def _public_modules():
    """Every module under ebm_ppl/ with no private (underscore) component, from the file tree."""
    names = []
    for path in sorted((ROOT / "ebm_ppl").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if not any(part.startswith("_") for part in parts):
            names.append(".".join(parts))
    return names


def _resolve(dotted):
    """``(module, name, object)`` for a dotted path ``module.name``, or the module itself."""
    try:
        return importlib.import_module(dotted), None, importlib.import_module(dotted)
    except ModuleNotFoundError:
        module_name, _, name = dotted.rpartition(".")
        module = importlib.import_module(module_name)
        return module, name, getattr(module, name)


def _is_data(obj):
    return not (callable(obj) or isinstance(obj, types.ModuleType))


def _module_constants(module):
    """``{name: has_docstring}`` for the names assigned at the top level of ``module``'s source."""
    body = ast.parse(inspect.getsource(module)).body
    constants = {}
    for node, following in zip(body, [*body[1:], None], strict=True):
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        else:
            continue
        documented = (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        )
        constants.update(dict.fromkeys(targets, documented))
    return constants


def _from_pending_module(name, obj):
    if getattr(obj, "__module__", None) in PENDING:
        return True
    # A constant has no __module__: look in the pending modules the package itself imported (never
    # import one here, it may be half-written).
    for module_name in PENDING:
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, name, None) is obj:
            return True
    return False


def test_pages_found():
    assert PAGES and MODULES and TABLES, "docs/api/*.rst not found or not parsed"
    assert "ebm_ppl" in MODULES


@pytest.mark.parametrize("module_name", MODULES)
def test_documented_module_imports_and_has_a_docstring(module_name):
    """Each page's module imports under its documented name, and has the module docstring that
    ``automodule`` renders at the top of its section."""
    module = importlib.import_module(module_name)
    assert module.__name__ == module_name
    assert (module.__doc__ or "").strip(), f"{module_name} has no module docstring"


def test_every_public_module_documented_or_pending():
    assert not set(PENDING) & set(MODULES), "documented modules still listed under TO ADD"
    missing = sorted(set(_public_modules()) - set(MODULES) - set(PENDING))
    assert not missing, f"modules missing from docs/api/*.rst (add an automodule): {missing}"


def test_leaf_modules_documented_with_members():
    leaves = [m for m in MODULES if not hasattr(importlib.import_module(m), "__path__")]
    bare = sorted(set(leaves) - WITH_MEMBERS)
    assert not bare, f"automodule without :members: for {bare}"


@pytest.mark.parametrize("module_name", sorted(WITH_MEMBERS))
def test_public_constants_have_docstrings(module_name):
    module = importlib.import_module(module_name)
    constants = _module_constants(module)
    undocumented = [
        name
        for name in getattr(module, "__all__", ())
        if _is_data(getattr(module, name)) and constants.get(name) is False
    ]
    assert not undocumented, (
        f"{module_name}: constants without a docstring are left out of the reference: "
        f"{undocumented} (add a string literal right after each assignment)"
    )


@pytest.mark.parametrize("package_name", [m for m in MODULES if m not in WITH_MEMBERS])
def test_package_exports_listed_and_documented(package_name):
    package = importlib.import_module(package_name)
    exports = getattr(package, "__all__", None)
    if exports is None:
        pytest.skip(f"{package_name} has no __all__")
    table = {}
    for entry in TABLES.get(package_name, []):
        module, name, obj = _resolve(entry)
        table[entry.rpartition(".")[2]] = (entry, module, name, obj)

    missing = [
        name
        for name in exports
        if name not in table and not _from_pending_module(name, getattr(package, name))
    ]
    assert not missing, f"{package_name}.__all__ names missing from its autosummary: {missing}"
    extra = sorted(set(table) - set(exports))
    assert not extra, f"autosummary of {package_name} lists names not in __all__: {extra}"

    for export, (entry, module, name, obj) in table.items():
        assert obj is getattr(package, export), f"{entry} is not {package_name}.{export}"
        if isinstance(obj, types.ModuleType):
            assert obj.__name__ in MODULES, f"module {entry} is not documented"
            continue
        listed = name in getattr(module, "__all__", ())
        if _is_data(obj):  # Sphinx documents a constant only where it is assigned with a docstring
            listed = listed and _module_constants(module).get(name, False)
        documented = (module.__name__ in WITH_MEMBERS and listed) or entry in EXPLICIT
        assert documented, (
            f"{entry} has no entry in the reference: {module.__name__} is not documented with "
            f":members:, or its __all__ lacks {name!r} (document it with its own auto* directive)"
        )
