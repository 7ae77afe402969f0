"""scripts/gpu_check.sh runs on a lent GPU machine, rarely: what it names must exist here."""

import re
import subprocess

from tests.recipe_helpers import REPO

SCRIPT = REPO / "scripts" / "gpu_check.sh"


def test_the_gpu_check_parses_and_names_files_that_exist():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    text = SCRIPT.read_text()
    paths = set(re.findall(r"\b((?:tests|scripts)/[\w/]+\.(?:py|sh))", text))
    assert {"tests/test_rnnlib_triton.py", "scripts/bench_rnn.py"} <= paths
    missing = sorted(p for p in paths if not (REPO / p).is_file())
    assert not missing, f"scripts/gpu_check.sh names files that do not exist: {missing}"


def test_every_stage_it_runs_is_defined():
    text = SCRIPT.read_text()
    default = re.search(r"STAGES=\$\{\*:-([\w ]+)\}", text).group(1).split()
    defined = set(re.findall(r"^(\w+)\(\) \{", text, flags=re.MULTILINE))
    assert default and set(default) <= defined, (default, defined)
