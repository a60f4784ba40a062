"""The `modal` package, imported only when a Modal app is built, and refused when too old for the calls we make.

modal 1.3.0 is the first release with every API the backend uses: ``single_use_containers`` (a fresh container per
cell, as the benchmark runs each submission in a fresh process) arrived there; ``Function.map(return_exceptions=)``,
``Retries``, ``Volume.read_only()/commit()/listdir()/read_file()``, ``Image.from_registry(add_python=)``,
``Image.add_local_python_source`` and ``enable_output()`` are all older. ``tests/test_modal.py`` checks the bound.
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import Any

from eval.errors import UserError

MODAL_MIN = (1, 3, 0)
MODAL_MIN_TEXT = ".".join(map(str, MODAL_MIN))
UPGRADE = f"pip install -U 'modal>={MODAL_MIN_TEXT},<2'"


def release(version: str) -> tuple[int, ...]:
    """The leading numeric release of a version string: ``1.3.0.post1`` → (1, 3, 0), ``0.67.28`` → (0, 67, 28)."""
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    if match is None:
        raise UserError(f"cannot read the modal version {version!r}; {UPGRADE}")
    return tuple(int(part) for part in match.group().split("."))


def check_modal_version(version: str) -> None:
    """One line naming the upgrade when ``version`` predates the backend's first usable modal."""
    if release(version) < MODAL_MIN:
        raise UserError(f"modal {version} is too old for the Modal backend (it needs {MODAL_MIN_TEXT}+ for "
                        f"single_use_containers); {UPGRADE}")


def import_modal() -> Any:
    """``import modal``, with the install or upgrade named when it is missing or too old."""
    try:  # optional extra `modal`
        import modal
    except ImportError:
        raise UserError("the Modal backend needs the `modal` package: pip install -e '.[modal]'") from None
    check_modal_version(metadata.version("modal"))
    return modal
