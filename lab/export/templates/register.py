"""A submission's first act: put itself in ``sys.modules`` when the loader did not."""

from __future__ import annotations

import gc
import sys
import types


def _register_module() -> None:
    """Put this module in sys.modules when the loader did not.

    The harness's run_eval.py executes this file with ``spec.loader.exec_module`` and never registers it, while
    ``dataclasses`` looks a class's module up in ``sys.modules`` to read string annotations (this file uses
    ``from __future__ import annotations``) and fails when it is missing.
    """
    if __name__ in sys.modules:
        return
    namespace = globals()
    for referrer in gc.get_referrers(namespace):
        if isinstance(referrer, types.ModuleType) and referrer.__dict__ is namespace:
            sys.modules[__name__] = referrer
            return
    raise ImportError(f"{__name__}: cannot find this module to register it in sys.modules")


_register_module()
