"""Memory-mapped features: the same batches as in memory, shared (not copied) by DataLoader
workers and by the ranks of a process group, normalised on access."""

import json
import os
import pickle
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, get_worker_info

from recipes.timit.data import timit_datamodule
from recipes.toolkit.data.feature_store import FeatureStore, moments

FBANK40 = {"num_mel_bins": 40, "frame_length_ms": 25.0, "frame_shift_ms": 10.0, "dither": 0.0,
           "deltas": 0, "normalization": "global"}  # fmt: skip


def mapped_files() -> set[str]:
    """Paths of the files this process has memory-mapped."""
    lines = Path("/proc/self/maps").read_text().splitlines()
    return {line.split(maxsplit=5)[5] for line in lines if len(line.split(maxsplit=5)) == 6}


def test_items_subsets_and_normalisation_equal_the_tensors_they_came_from():
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(n, 3, generator=g) * 4 + 2 for n in (5, 1, 7, 3)]
    store = FeatureStore.from_tensors(feats)
    assert store.lengths == [5, 1, 7, 3] and len(store) == 4
    for got, expected in zip(store, feats, strict=True):
        assert torch.equal(got, expected)
    assert torch.equal(store[-1], feats[-1])
    with pytest.raises(IndexError):
        store[4]
    sub = store.subset([2, 0])
    assert sub.lengths == [7, 5] and torch.equal(sub[0], feats[2])
    mean, std = moments(store)
    x = torch.cat(feats).double()
    torch.testing.assert_close(mean, x.mean(0))
    torch.testing.assert_close(std, x.std(0))
    normed = store.normalized(mean, std)
    torch.testing.assert_close(normed[2], ((feats[2].double() - x.mean(0)) / x.std(0)).float())
    groups = store.normalized(torch.stack([mean, mean + 1]), torch.stack([std, std * 2]),
                              groups=[0, 1, 0, 1])  # fmt: skip
    torch.testing.assert_close(groups.subset([1])[0], ((feats[1] - (mean + 1)) / (std * 2)).float())


def test_a_pickled_memory_mapped_store_carries_the_path_not_the_rows(tmp_path):
    rows = np.arange(4000 * 40, dtype="<f4").reshape(4000, 40)
    rows.tofile(tmp_path / "split.f32")
    store = FeatureStore.from_file(tmp_path / "split.f32", 40, [1000, 3000])
    assert store.memory_mapped and str(tmp_path / "split.f32") in mapped_files()
    blob = pickle.dumps(store.normalized(torch.zeros(40), torch.ones(40) * 2))
    assert len(blob) < rows.nbytes / 50
    again = pickle.loads(blob)
    assert again.memory_mapped
    assert torch.equal(again[1], torch.from_numpy(rows[1000:]) / 2)


def _batches(datamodule) -> list[dict]:
    datamodule.setup("fit")
    return list(datamodule.train_dataloader()) + list(datamodule.val_dataloader())


def test_memory_mapped_and_in_memory_features_give_the_same_batches(tiny_data_cfg):
    data = {**tiny_data_cfg, "max_frames": 2000, "num_workers": 0}
    mapped = timit_datamodule(data, FBANK40, seed=3)
    mapped.load()
    assert mapped.corpus.splits["train"].feats.memory_mapped
    in_memory = timit_datamodule(data, FBANK40, seed=3)
    corpus = in_memory.load()
    for split in corpus.splits.values():
        split.feats = [f.clone() for f in split.feats]  # what the first format held
    first, second = _batches(mapped), _batches(in_memory)
    assert len(first) == len(second) > 2
    for a, b in zip(first, second, strict=True):
        assert a["utt_ids"] == b["utt_ids"]
        assert torch.equal(a["feats"], b["feats"]) and torch.equal(a["targets"], b["targets"])


def _report_worker(path: str, worker_id: int) -> None:
    info = get_worker_info()
    store = info.dataset.split.feats
    record = {"mapped": store.memory_mapped, "files": sorted(mapped_files()), "pid": os.getpid()}
    Path(path, f"worker{info.id}.json").write_text(json.dumps(record))


def _rank(rank: int, world: int, data: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        datamodule = timit_datamodule(data, FBANK40)
        corpus = datamodule.load()  # both ranks at once: one computes, the other waits and reuses
        store = corpus.splits["train"].feats
        folder = Path(out, f"rank{rank}")
        folder.mkdir()
        dataset = datamodule.dataset("train")
        loader = DataLoader(dataset, batch_size=4, num_workers=1, collate_fn=datamodule.collate_fn,
                            multiprocessing_context="spawn",  # workers get the store pickled
                            worker_init_fn=partial(_report_worker, str(folder)))  # fmt: skip
        frames = sum(int(b["lengths"].sum()) for b in loader)
        totals = [None] * world
        dist.all_gather_object(totals, (frames, str(store.path)))
        record = {"mapped": store.memory_mapped, "files": sorted(mapped_files()), "totals": totals}
        Path(folder, "rank.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ranks_and_their_workers_map_one_file_instead_of_copying_it(tiny_data_cfg, tmp_path):
    data = {**tiny_data_cfg, "max_frames": 2000, "num_workers": 0}
    os.environ["MASTER_PORT"] = str(29500 + os.getpid() % 1000)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    mp.start_processes(_rank, args=(2, data, str(tmp_path)), nprocs=2, start_method="spawn")
    reports = {f"{p.parent.name}/{p.stem}": json.loads(p.read_text())
               for p in tmp_path.glob("rank*/*.json")}  # fmt: skip
    assert sorted(reports) == ["rank0/rank", "rank0/worker0", "rank1/rank", "rank1/worker0"]
    (frames, path), other = reports["rank0/rank"]["totals"]
    assert other == [frames, path] and frames > 0  # both ranks read every frame of one file
    assert path.endswith("train.f32")
    for name, record in reports.items():
        assert record["mapped"], name
        assert path in record["files"], f"{name} does not map {path}"
    pids = {reports[f"rank{r}/worker0"]["pid"] for r in (0, 1)}
    assert len(pids) == 2
