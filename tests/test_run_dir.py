"""Run directories: two runs started in the same second never share one."""

import multiprocessing
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from recipes.toolkit.config import register_resolvers
from recipes.toolkit.run import run_dir
from recipes.toolkit.run.run_dir import claim_run_dir

TASK_CONF = Path(__file__).resolve().parents[1] / "recipes" / "timit" / "conf"


def _claim_after(barrier, parent: str, queue) -> None:
    barrier.wait()  # every process asks at once
    queue.put(claim_run_dir(parent, "same-second"))


def test_processes_claiming_together_get_distinct_directories(tmp_path):
    context = multiprocessing.get_context("spawn")
    count = 4
    barrier, queue = context.Barrier(count), context.Queue()
    processes = [
        context.Process(target=_claim_after, args=(barrier, str(tmp_path), queue))
        for _ in range(count)
    ]
    for process in processes:
        process.start()
    claimed = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    names = sorted(Path(path).name for path in claimed)
    assert names == ["same-second", "same-second_2", "same-second_3", "same-second_4"]
    assert all(Path(path).is_dir() for path in claimed)


def test_default_run_dir_is_claimed_once_per_process(tmp_path, monkeypatch):
    monkeypatch.setattr(run_dir, "_claimed", {})
    register_resolvers()
    overrides = [f"paths.log_dir={tmp_path}", "task_name=demo"]
    with initialize_config_dir(config_dir=str(TASK_CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    first = OmegaConf.select(cfg, "hydra.run.dir")
    assert Path(first).parent == tmp_path / "demo" / "runs" and Path(first).is_dir()
    assert OmegaConf.select(cfg, "hydra.run.dir") == first  # resolved again: the same
