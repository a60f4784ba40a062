"""The Modal image: the benchmark's own environment, plus mamba-ssm's fused kernels, as a list of build calls.

The benchmark's container (``cybertronai/wikitext``: its ``Dockerfile`` and ``submit.py``) is Python 3.11 with
torch 2.5.1 built for CUDA 12.4 and exact pins for numpy, nvidia-ml-py, pyarrow and tiktoken; CodeCarbon measures
the CPU part (``~=3.2``). This image starts from NVIDIA's CUDA 12.4 *devel* image (nvcc, headers) with the same
Python, installs the same pins, then builds mamba-ssm and causal-conv1d against that torch in a layer of their own:
Modal caches each layer by content, so the kernels build once and the project's sources, added last, change
nothing below them.

What gets installed is pyproject.toml's runtime dependencies (``[project].dependencies``, and the ``cuda`` extra
for the kernel layer), each replaced by the benchmark's pin where it has one: a dependency added there reaches the
containers without an edit here (a cell once trained and then failed for want of ``greenlet``).

The spec is plain data (:func:`image_calls`): ``--dry-run`` prints it and the tests check it without Modal;
:func:`build_image` applies the very same calls to ``modal.Image``.
"""

from __future__ import annotations

import json
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from eval.errors import UserError

PYTHON = "3.11"
CUDA_DEVEL_BASE = "nvidia/cuda:12.4.1-devel-ubuntu22.04"
TORCH_INDEX = "https://download.pytorch.org/whl/cu124"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
CUDA_EXTRA = "cuda"  # pyproject's extra with the fused kernels: built in a layer of their own
# Exactly the benchmark image's pins (Dockerfile, submit.py's tiktoken layer and datasets for its bake,
# requirements' codecarbon range); they replace pyproject's ranges. torch gets a layer of its own, from TORCH_INDEX.
BENCHMARK_PINS = {
    "torch": "torch==2.5.1",
    "numpy": "numpy==2.1.3",
    "nvidia-ml-py": "nvidia-ml-py==12.560.30",
    "pyarrow": "pyarrow==18.1.0",
    "tiktoken": "tiktoken==0.7.0",
    "codecarbon": "codecarbon~=3.2",
    "datasets": "datasets==3.2.0",
}
# The releases built for torch 2.5 / CUDA 12 / Python 3.11; --no-build-isolation so they compile against that torch.
KERNEL_PINS = {"mamba-ssm": "mamba-ssm==2.2.4", "causal-conv1d": "causal-conv1d==1.5.0.post8"}
# huggingface-hub stays below 1.0, which datasets 3.2.0 predates (mamba-ssm's transformers would pull it up).
HUB = "huggingface-hub>=0.23,<1"
BUILD_TOOLS = ("packaging", "ninja", "wheel", "setuptools")
KERNEL_ARCHS = "8.0;9.0"  # A100 and H100: compiling for two architectures keeps the one-off build short
PACKAGES = ("lab", "subchar", "eval", "zoo", "tokenizers_local")


class ImageCall(NamedTuple):
    """One ``modal.Image`` method call: the first is a constructor, each later one adds a layer."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def __str__(self) -> str:
        parts = [json.dumps(arg) if isinstance(arg, str) else repr(arg) for arg in self.args]
        parts += [f"{key}={json.dumps(value)}" for key, value in self.kwargs.items()]
        return f"{self.method}({', '.join(parts)})"


def distribution_name(requirement: str) -> str:
    """The normalised distribution a requirement names (PEP 503): ``"Foo_Bar[x]>=1"`` → ``"foo-bar"``."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def declared_requirements(pyproject: Path = PYPROJECT) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """pyproject's runtime dependencies and its ``cuda`` extra, as written there."""
    if not pyproject.is_file():
        raise UserError(f"no {pyproject.name} at {pyproject.parent}: the Modal image is built from its dependencies; "
                        "run subchar from a source checkout (pip install -e '.[modal]')")
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return tuple(project["dependencies"]), tuple(project["optional-dependencies"][CUDA_EXTRA])


def pinned(requirements: tuple[str, ...], pins: dict[str, str]) -> tuple[str, ...]:
    """Each requirement, or the pin of its distribution where there is one."""
    return tuple(pins.get(distribution_name(requirement), requirement) for requirement in requirements)


@cache
def image_calls(pyproject: Path = PYPROJECT) -> tuple[ImageCall, ...]:
    """The build calls: torch from its CUDA index, the other runtime dependencies, then the kernel layer."""
    runtime, kernels = declared_requirements(pyproject)
    rest = tuple(requirement for requirement in runtime if distribution_name(requirement) != "torch")
    return (
        ImageCall("from_registry", (CUDA_DEVEL_BASE,), {"add_python": PYTHON}),
        ImageCall("pip_install", (BENCHMARK_PINS["torch"],), {"index_url": TORCH_INDEX}),
        ImageCall("pip_install", (*pinned(rest, BENCHMARK_PINS), HUB), {}),
        ImageCall("pip_install", BUILD_TOOLS, {}),
        ImageCall("env", ({"TORCH_CUDA_ARCH_LIST": KERNEL_ARCHS, "MAX_JOBS": "8"},), {}),
        ImageCall("pip_install", (*pinned(kernels, KERNEL_PINS), HUB), {"extra_options": "--no-build-isolation"}),
        ImageCall("env", ({"PYTHONUNBUFFERED": "1"},), {}),  # container prints reach the log as they happen
        ImageCall("add_local_python_source", PACKAGES, {}),
    )


def installed_distributions(calls: tuple[ImageCall, ...]) -> set[str]:
    """The distributions the ``pip_install`` layers of ``calls`` name (normalised)."""
    return {distribution_name(arg) for call in calls if call.method == "pip_install" for arg in call.args}


def build_image(modal: Any, calls: tuple[ImageCall, ...] | None = None) -> Any:
    """Apply ``calls`` to ``modal.Image``: building the description needs no network (Modal builds on first use)."""
    first, *layers = calls or image_calls()
    image = getattr(modal.Image, first.method)(*first.args, **first.kwargs)
    for call in layers:
        image = getattr(image, call.method)(*call.args, **call.kwargs)
    return image


def describe_image(calls: tuple[ImageCall, ...] | None = None) -> str:
    """The image as the calls that build it, one layer a line (``--dry-run``)."""
    first, *layers = calls or image_calls()
    return "\n".join([f"image: modal.Image.{first}"] + [f"  .{call}" for call in layers])
