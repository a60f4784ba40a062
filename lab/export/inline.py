"""Inlining this project's modules into one file: whole modules, or the named top-level definitions of one.

Imports of this project are removed (their names are defined by earlier parts of the file); imports of the
standard library and of the benchmark image stay where they are, and so does any import under
``try/except ImportError`` (an optional dependency, or the template's choice of base class).
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

IMAGE_PACKAGES = frozenset({"torch", "numpy", "tiktoken", "regex"})  # the benchmark image, beside the stdlib
PROJECT_PACKAGES = frozenset({"eval", "lab", "subchar", "tokenizers_local", "zoo"})
SUBSTITUTED_PACKAGES = frozenset({"tqdm"})  # the template defines a silent stand-in


@dataclass(frozen=True)
class Part:
    """Source to inline: a module of this project, whole (no ``names``) or only the named definitions."""

    module: str
    names: tuple[str, ...] = ()


def allowed_roots() -> frozenset[str]:
    return IMAGE_PACKAGES | frozenset(sys.stdlib_module_names)


def source_of(module: str) -> tuple[Path, str]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"export part {module!r} is not an importable module; fix lab/export/build.py")
    path = Path(spec.origin)
    return path, path.read_text(encoding="utf-8")


def import_root(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return ["." if node.level else (node.module or "").split(".")[0]]
    return [alias.name.split(".")[0] for alias in node.names]


def guarded_imports(tree: ast.AST) -> set[int]:
    """ids of the import statements inside ``try`` blocks that catch ImportError (optional dependencies)."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(catches_import_error(h) for h in node.handlers):
            guarded.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return guarded


def catches_import_error(handler: ast.ExceptHandler) -> bool:
    caught = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(c, ast.Name) and c.id in ("ImportError", "ModuleNotFoundError") for c in caught)


def inline(part: Part) -> str:
    """The part's source without its imports of this project (``from __future__`` moves to the file head)."""
    path, source = source_of(part.module)
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    dropped = project_import_lines(tree, path)
    if part.names:
        blocks = selected_blocks(tree, lines, part, path)
        banner = f"only {', '.join(part.names)}"
    else:
        blocks = [[(1, len(lines))]]
        banner = "whole module"
    texts = ["".join(lines[i - 1] for start, end in block for i in range(start, end + 1) if i not in dropped)
             for block in blocks]
    body = re.sub(r"\n{4,}", "\n\n\n", "\n\n\n".join(text.strip("\n") for text in texts if text.strip()))
    relative = part.module.replace(".", "/") + ".py"
    return f"\n# ==== inlined from {relative} ({banner}) ====\n{body}\n"


def project_import_lines(tree: ast.Module, path: Path) -> set[int]:
    """Lines of the imports to remove (this project's, substituted ones, ``__future__``); any other import must
    be the stdlib's or the image's, unless it sits under ``try/except ImportError``, where every import stays."""
    guarded = guarded_imports(tree)
    dropped: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in guarded:
            continue
        roots = set(import_root(node))
        if roots & (PROJECT_PACKAGES | SUBSTITUTED_PACKAGES | {"__future__"}):
            dropped.update(range(node.lineno, node.end_lineno + 1))
        elif not roots <= allowed_roots():
            raise RuntimeError(f"{path} imports {', '.join(sorted(roots))}, which the benchmark image lacks; "
                               "the export cannot inline it")
    return dropped


def selected_blocks(tree: ast.Module, lines: list[str], part: Part, path: Path) -> list[list[tuple[int, int]]]:
    """Line spans: one block with the imports the named top-level definitions use, then one block per
    definition, with the comment lines right above it."""
    wanted = set(part.names)
    chosen = [stmt for stmt in tree.body if defined_names(stmt) & wanted]
    missing = wanted - set().union(*(defined_names(stmt) for stmt in chosen))
    if missing:
        raise RuntimeError(f"{path} no longer defines {', '.join(sorted(missing))}; update the export parts")
    used = {node.id for stmt in chosen for node in ast.walk(stmt) if isinstance(node, ast.Name)}
    imports = [(stmt.lineno, stmt.end_lineno) for stmt in tree.body if isinstance(stmt, (ast.Import, ast.ImportFrom))
               and {alias.asname or alias.name.split(".")[0] for alias in stmt.names} & used]
    definitions = []
    for stmt in chosen:
        start = first_line(stmt)
        while start > 1 and lines[start - 2].lstrip().startswith("#"):
            start -= 1
        definitions.append([(start, stmt.end_lineno)])
    return [imports, *definitions]


def defined_names(stmt: ast.stmt) -> set[str]:
    """Names a top-level statement defines (imports excluded)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
    return {node.id for target in targets for node in ast.walk(target)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}


def first_line(stmt: ast.stmt) -> int:
    decorators = getattr(stmt, "decorator_list", [])
    return min([stmt.lineno, *(d.lineno for d in decorators)])
