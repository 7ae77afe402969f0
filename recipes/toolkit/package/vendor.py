"""The runtime's source files, copied into an exported folder as a package of their own.

The runtime modules of :mod:`recipes.toolkit.package` and the toolkit modules they use import
each other by their repository names; copied into ``<folder>/recognizer_runtime/`` those imports
become relative ones (``from recipes.toolkit.model import X`` -> ``from .model import X``), and
``rnnlib/`` is copied beside it. Every copied file is checked to import nothing but the standard
library, torch, torchaudio, numpy, soundfile, onnxruntime and triton (both optional: onnxruntime
is imported inside a function, triton only by the Light GRU's GPU loop route, which falls back to
PyTorch operators where it does not import) and ``rnnlib``.

>>> rewrite_imports("from recipes.toolkit.model import AcousticModel\\n", "runtime")
'from .model import AcousticModel\\n'
>>> check_imports("import lightning\\n", "x.py")
Traceback (most recent call last):
...
ValueError: x.py imports lightning, which a packaged model must not need
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

RUNTIME_PACKAGE = "recognizer_runtime"
# repository module -> its name inside the runtime package
MODULES: dict[str, str] = {
    "recipes.toolkit.package.runtime": "runtime",
    "recipes.toolkit.package.audio": "audio",
    "recipes.toolkit.package.features": "features",
    "recipes.toolkit.package.decoders": "decoders",
    "recipes.toolkit.package.timing": "timing",
    "recipes.toolkit.package.streaming": "streaming",
    "recipes.toolkit.package.quantize": "quantize",
    "recipes.toolkit.package.onnx_backend": "onnx_backend",
    "recipes.toolkit.model": "model",
    "recipes.toolkit.crdnn": "crdnn",
    "recipes.toolkit.data.fbank": "fbank",
    "recipes.toolkit.data.feature_config": "feature_config",
    "recipes.toolkit.data.feature_store": "feature_store",
    "recipes.toolkit.data.packed": "packed",  # feature_store's index check (numpy only)
    "recipes.toolkit.data.segments": "segments",
    "recipes.toolkit.ctc.decoding": "ctc_decoding",
    "recipes.toolkit.framewise.viterbi": "viterbi",
}
# onnxruntime: imported only by the onnx backend, inside the function that makes its session;
# triton: only by rnnlib.ligru.triton_steps, which rnnlib.ligru.loop_route imports lazily on CUDA
ALLOWED_ROOTS = frozenset(
    {"torch", "torchaudio", "numpy", "soundfile", "onnxruntime", "triton", "rnnlib"}
) | frozenset(sys.stdlib_module_names)
RNNLIB = Path(importlib.util.find_spec("rnnlib").origin).parent

INIT = '''"""The runtime of a packaged phone recogniser (written by recipes.toolkit.package.export).

    import sys
    sys.path.insert(0, "<the model folder>")
    import recognizer_runtime
    recognizer = recognizer_runtime.load()  # the model of the folder that holds this package
    recognizer.transcribe("a.wav")          # [TimedPhone(phone, start, end), ...]
"""

from pathlib import Path

from .runtime import PhoneRecognizer, TimedPhone, read_audio

__all__ = ["MODEL_DIR", "PhoneRecognizer", "TimedPhone", "load", "read_audio"]

MODEL_DIR = Path(__file__).resolve().parent.parent


def load(directory=None, decoding=None, backend="torch") -> PhoneRecognizer:
    """The packaged model of ``directory`` (default: the folder holding this package);
    ``decoding`` overrides some of its decoding options; ``backend="onnx"`` runs its
    ``model.onnx`` with onnxruntime (a package exported with onnx=true)."""
    return PhoneRecognizer.from_directory(directory or MODEL_DIR, decoding, backend)
'''


def source_file(module: str) -> Path:
    """The ``.py`` file of a repository module."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"cannot find the source of {module}")
    return Path(spec.origin)


def rewrite_imports(source: str, name: str) -> str:
    """``source`` with its imports of :data:`MODULES` made relative; any other import of the
    repository's ``recipes`` raises ``ValueError`` naming it and ``name``."""
    lines = source.splitlines(keepends=True)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "recipes":
                    raise ValueError(f"{name}: `import {alias.name}` cannot be vendored")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "recipes":
                continue
            if node.module not in MODULES:
                raise ValueError(f"{name} imports {node.module}, which the runtime does not carry")
            line = lines[node.lineno - 1]
            old, new = f"from {node.module} import", f"from .{MODULES[node.module]} import"
            if old not in line:
                raise ValueError(f"{name}:{node.lineno}: cannot rewrite {line.strip()!r}")
            lines[node.lineno - 1] = line.replace(old, new, 1)
    return "".join(lines)


def check_imports(source: str, name: str) -> None:
    """Raise ``ValueError`` when ``source`` imports a module outside :data:`ALLOWED_ROOTS`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots = [node.module.split(".")[0]]
        else:
            continue
        for root in roots:
            if root not in ALLOWED_ROOTS:
                raise ValueError(f"{name} imports {root}, which a packaged model must not need")


def write_runtime(folder: Path) -> Path:
    """Write ``folder/recognizer_runtime/`` (the runtime, imports made relative) and copy
    ``rnnlib/`` (its ``.py`` and ``.cpp`` files) into ``folder``; returns the runtime package's
    path."""
    package = Path(folder) / RUNTIME_PACKAGE
    package.mkdir(parents=True)
    for module, short in MODULES.items():
        source = rewrite_imports(source_file(module).read_text(encoding="utf-8"), module)
        check_imports(source, module)
        (package / f"{short}.py").write_text(source, encoding="utf-8")
    (package / "__init__.py").write_text(INIT, encoding="utf-8")
    for path in sorted(RNNLIB.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        check_imports(source, str(path))
        target = Path(folder) / "rnnlib" / path.relative_to(RNNLIB)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source, encoding="utf-8")
    for path in sorted(RNNLIB.rglob("*.cpp")):  # the Light GRU's C++ loops, built where used
        target = Path(folder) / "rnnlib" / path.relative_to(RNNLIB)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    return package
