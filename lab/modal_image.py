"""The Modal image: the benchmark's own environment, plus mamba-ssm's fused kernels, as a list of build calls.

The benchmark's container (``cybertronai/wikitext``: its ``Dockerfile`` and ``submit.py``) is Python 3.11 with
torch 2.5.1 built for CUDA 12.4 and exact pins for numpy, nvidia-ml-py, pyarrow and tiktoken; CodeCarbon measures
the CPU part (``~=3.2``). This image starts from NVIDIA's CUDA 12.4 *devel* image (nvcc, headers) with the same
Python, installs the same pins, then builds mamba-ssm and causal-conv1d against that torch in a layer of their own:
Modal caches each layer by content, so the kernels build once and the project's sources, added last, change
nothing below them.

The spec is plain data (:data:`IMAGE_CALLS`): ``--dry-run`` prints it and the tests check it without Modal;
:func:`build_image` applies the very same calls to ``modal.Image``.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

PYTHON = "3.11"
CUDA_DEVEL_BASE = "nvidia/cuda:12.4.1-devel-ubuntu22.04"
TORCH = "torch==2.5.1"
TORCH_INDEX = "https://download.pytorch.org/whl/cu124"
# Exactly the benchmark image's pins (Dockerfile, submit.py's tiktoken layer, requirements' codecarbon range).
BENCHMARK_PINS = ("numpy==2.1.3", "nvidia-ml-py==12.560.30", "pyarrow==18.1.0", "tiktoken==0.7.0", "codecarbon~=3.2")
# What subchar needs beyond the benchmark's image; datasets as the benchmark's own bake pinned it.
# huggingface-hub stays below 1.0, which datasets 3.2.0 predates (mamba-ssm's transformers would pull it up).
HUB = "huggingface-hub>=0.23,<1"
PROJECT_REQUIREMENTS = ("tokenizers>=0.19,<1", "regex>=2023.0", "sentencepiece>=0.2", "tqdm>=4.66",
                        "datasets==3.2.0", HUB)
BUILD_TOOLS = ("packaging", "ninja", "wheel", "setuptools")
# The releases built for torch 2.5 / CUDA 12 / Python 3.11; --no-build-isolation so they compile against that torch.
MAMBA_KERNELS = ("causal-conv1d==1.5.0.post8", "mamba-ssm==2.2.4")
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


IMAGE_CALLS: tuple[ImageCall, ...] = (
    ImageCall("from_registry", (CUDA_DEVEL_BASE,), {"add_python": PYTHON}),
    ImageCall("pip_install", (TORCH,), {"index_url": TORCH_INDEX}),
    ImageCall("pip_install", BENCHMARK_PINS + PROJECT_REQUIREMENTS, {}),
    ImageCall("pip_install", BUILD_TOOLS, {}),
    ImageCall("env", ({"TORCH_CUDA_ARCH_LIST": KERNEL_ARCHS, "MAX_JOBS": "8"},), {}),
    ImageCall("pip_install", (*MAMBA_KERNELS, HUB), {"extra_options": "--no-build-isolation"}),
    ImageCall("env", ({"PYTHONUNBUFFERED": "1"},), {}),  # container prints reach the log as they happen
    ImageCall("add_local_python_source", PACKAGES, {}),
)


def build_image(modal: Any, calls: tuple[ImageCall, ...] = IMAGE_CALLS) -> Any:
    """Apply ``calls`` to ``modal.Image``: building the description needs no network (Modal builds on first use)."""
    first, *layers = calls
    image = getattr(modal.Image, first.method)(*first.args, **first.kwargs)
    for call in layers:
        image = getattr(image, call.method)(*call.args, **call.kwargs)
    return image


def describe_image(calls: tuple[ImageCall, ...] = IMAGE_CALLS) -> str:
    """The image as the calls that build it, one layer a line (``--dry-run``)."""
    first, *layers = calls
    return "\n".join([f"image: modal.Image.{first}"] + [f"  .{call}" for call in layers])
