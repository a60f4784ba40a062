"""Checks on a generated submission: it compiles, defines each top-level name once, defines every global it uses
and imports nothing outside the benchmark image (except under ``try/except ImportError``)."""

from __future__ import annotations

import ast
import builtins
import symtable

from lab.export.inline import allowed_roots, defined_names, guarded_imports, import_root

SUBMISSION_FILE = "submission.py"


def unguarded_imports(source: str) -> list[str]:
    """Top-level packages the file imports outside ``try/except ImportError`` that the benchmark image lacks."""
    tree = ast.parse(source)
    guarded = guarded_imports(tree)
    bad = {root for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in guarded
           for root in import_root(node) if root not in allowed_roots()}
    return sorted(bad)


def undefined_names(source: str) -> list[str]:
    """Global names the file reads at run time but never defines (annotations are not evaluated: ``from
    __future__ import annotations``, so symtable does not list them)."""
    table = symtable.symtable(source, SUBMISSION_FILE, "exec")
    defined = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    known = defined | set(dir(builtins)) | {"__file__", "__spec__", "__loader__", "__builtins__"}
    missing: set[str] = set()
    pending = [table]
    while pending:
        scope = pending.pop()
        pending.extend(scope.get_children())
        for symbol in scope.get_symbols():
            is_global = (symbol.is_global() or scope.get_type() == "module") and not bound_locally(scope, symbol)
            if symbol.is_referenced() and is_global and symbol.get_name() not in known:
                missing.add(symbol.get_name())
    return sorted(missing)


def bound_locally(scope: symtable.SymbolTable, symbol: symtable.Symbol) -> bool:
    """A function's own name (a parameter, or bound in it without ``global``). Python 3.11's symtable takes any
    scope named ``top`` for the module and calls its locals global (fixed in 3.12), so this is asked separately."""
    return scope.get_type() != "module" and not symbol.is_declared_global() and (
        symbol.is_parameter() or symbol.is_assigned() or symbol.is_imported() or symbol.is_namespace())


def duplicate_definitions(source: str) -> list[str]:
    seen: set[str] = set()
    twice: set[str] = set()
    for stmt in ast.parse(source).body:
        for name in defined_names(stmt):
            (twice if name in seen else seen).add(name)
    return sorted(twice)


def check_submission(source: str) -> None:
    """The checks above; RuntimeError names what the part lists got wrong."""
    compile(source, SUBMISSION_FILE, "exec")
    problems = {
        "defines twice": duplicate_definitions(source),
        "uses undefined": undefined_names(source),
        "imports outside the benchmark image": unguarded_imports(source),
    }
    found = "; ".join(f"{what} {', '.join(names)}" for what, names in problems.items() if names)
    if found:
        raise RuntimeError(f"generated {SUBMISSION_FILE} {found}: update the parts in lab/export/build.py")
