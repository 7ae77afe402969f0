"""The Light GRU's CPU loops over time as C++ loops (``cpp_loops.cpp``), built once per machine.

The C++ loops call the same ATen operators as :func:`rnnlib.ligru.cpu_kernel._forward_loop` and
the inner loop of its backward, in the same order with the same arguments, so their results are
bit-identical; what they save is the interpreter's few microseconds per operator call, a tenth
of a small layer's step. Their products follow :class:`rnnlib.ligru.products.RecurrentProduct`
branch for branch (its route and packed weights are handed over), so every dtype and product
route runs; :mod:`rnnlib.ligru.loop_route` decides where they are used.

The source is compiled with :func:`torch.utils.cpp_extension.load` the first time a process
needs it (about half a minute, one log line; needs a C++ compiler and ``ninja``) into
``$TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``), under a name that changes
with the source and the torch version; later processes import the built library directly, in
milliseconds.
Processes that start at once (DDP ranks) build it once: torch holds an OS-level lock while it
builds, which the kernel releases if the builder is killed, so a build killed half-way is redone
by the next process rather than waited for. Where the build fails, :func:`extension` logs why,
once, and returns None.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path
from types import ModuleType

import torch

SOURCE = Path(__file__).with_suffix(".cpp")
COMPILER_FLAGS = ["-O2"]  # no -march: the library may be shared by the nodes of a cluster
_extension: ModuleType | None = None
_error: str | None = None
log = logging.getLogger(__name__)


def build_name(source: Path | None = None) -> str:
    """The extension's name (of :data:`SOURCE` by default): changes with the source, the flags
    and the torch version.

    >>> build_name().startswith("rnnlib_ligru_loops_")
    True
    """
    digest = hashlib.sha1((source or SOURCE).read_bytes())
    digest.update(" ".join([torch.__version__, *COMPILER_FLAGS]).encode())
    return f"rnnlib_ligru_loops_{digest.hexdigest()[:12]}"


def build_root() -> Path:
    """Where the extension is built: ``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    return Path(root) if root else Path.home() / ".cache" / "torch_extensions"


def build(source: Path | None = None, root: Path | None = None) -> ModuleType:
    """Import the library built from ``source`` (default :data:`SOURCE`), compiling it first
    where it is not built yet; raises where that fails."""
    source = source or SOURCE
    name = build_name(source)
    directory = (root or build_root()) / name
    library = directory / f"{name}.so"
    if library.exists():
        try:  # without torch.utils.cpp_extension: its import costs a second and 170 MB
            return _import_library(name, library)
        except ImportError as error:  # a half-written library of a killed build, say
            log.info("Light GRU: %s does not load (%s); building it again", library, error)
    directory.mkdir(parents=True, exist_ok=True)
    log.info("Light GRU: compiling its C++ loops once for this machine into %s", directory)
    previous = logging.getLogger("torch.utils.cpp_extension").level
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime"
    try:
        from torch.utils import cpp_extension
    finally:
        logging.getLogger("torch.utils.cpp_extension").setLevel(previous)
    return cpp_extension.load(
        name,
        [str(source)],
        extra_cflags=COMPILER_FLAGS,
        build_directory=str(directory),
        verbose=False,
    )


def _import_library(name: str, library: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def extension() -> ModuleType | None:
    """The built C++ loops, or None (one log line saying why) where they cannot be built."""
    global _extension, _error
    if _extension is None and _error is None:
        try:
            _extension = build()
        except Exception as error:  # no compiler, no ninja, a failed compile or import
            _error = f"{type(error).__name__}: {error}".strip()
            log.warning(
                "Light GRU: its C++ loops could not be built (%s); the loops run as Python "
                "calls of the same operators (same results, slower)",
                _error.splitlines()[0],
            )
    return _extension


def build_error() -> str | None:
    """Why :func:`extension` returned None (None if it has not failed)."""
    return _error
