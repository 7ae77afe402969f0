"""The installed environment is the one in ``requirements.lock``: a drifted ``.venv`` is noticed."""

import re
from importlib import metadata
from pathlib import Path

from packaging.version import Version

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def locked_versions(text: str) -> dict[str, str]:
    """``{name: version}`` of every ``name==version`` line of a pip-compile'd lock."""
    return {m[1].lower(): m[2] for line in text.splitlines() if (m := PIN.match(line))}


def test_lock_pins_the_core_packages_exactly():
    locked = locked_versions(LOCK.read_text())
    for name in ("torch", "torchaudio", "lightning", "hydra-core", "omegaconf", "numpy"):
        assert name in locked, f"{LOCK.name} has no exact pin for {name}"
    assert locked["torch"] == "2.14.1" and locked["torchaudio"] == "2.11.1"


def test_installed_versions_match_the_lock():
    locked = locked_versions(LOCK.read_text())
    drifted = []
    for name, version in locked.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            drifted.append(f"{name}: locked {version}, not installed")
            continue
        if Version(installed).public != Version(version).public:
            drifted.append(f"{name}: locked {version}, installed {installed}")
    assert not drifted, (
        "the environment differs from requirements.lock (rebuild it: rm -rf .venv && make install):"
        "\n  " + "\n  ".join(drifted)
    )


def test_lock_reader_sees_pins_not_comments():
    text = "# via torch\nfoo-bar==1.2.3 \\\n    --hash=sha256:ab\nbaz==4.0 ; python_version<'4'\n"
    assert locked_versions(text) == {"foo-bar": "1.2.3", "baz": "4.0"}
