"""Real faults: a child process killed with SIGKILL at a point it announces itself."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_until_marker_then_kill(code: str, args: list[str], marker: Path, log_path: Path) -> None:
    """Run ``python -c code args`` and SIGKILL it as soon as it has written ``marker`` (no sleep
    decides when): what a kill leaves behind is then on disk for the test to inspect."""
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args], cwd=REPO, stdout=log_file, stderr=log_file,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )  # fmt: skip
        deadline = time.monotonic() + 120
        try:
            while not marker.exists():
                assert proc.poll() is None, f"child ended early:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, "child never reached the marker"
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
