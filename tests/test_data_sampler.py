"""Frame-budget batch sampler: budget, coverage, sharding, epochs."""

import numpy as np
import pytest

from recipes.toolkit.data.sampler import FrameBudgetBatchSampler


def _lengths(n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(50, 700, n).tolist()


@pytest.mark.parametrize("n", [1, 7, 101])
def test_budget_and_exact_coverage(n):
    lengths = _lengths(n)
    lengths[0] = 5000  # longer than the budget: a batch of its own
    s = FrameBudgetBatchSampler(lengths, max_frames=3000, seed=1)
    batches = list(s)
    assert len(batches) == len(s)
    assert sorted(i for b in batches for i in b) == list(range(n))
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 3000 or len(b) == 1
    assert [0] in batches


@pytest.mark.parametrize(("n", "replicas"), [(101, 2), (101, 3), (10, 3), (2, 3), (57, 2)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_shards_disjoint_and_equal(n, replicas, drop_last):
    lengths = _lengths(n, seed=n)
    shards = []
    for rank in range(replicas):
        s = FrameBudgetBatchSampler(lengths, 2500, seed=3, num_replicas=replicas, rank=rank,
                                    drop_last=drop_last)  # fmt: skip
        s.set_epoch(2)
        batches = list(s)
        assert len(batches) == len(s)
        shards.append(batches)
    assert len({len(b) for b in shards}) == 1  # same number of batches on every rank
    sets = [{i for b in batches for i in b} for batches in shards]
    if n >= replicas:
        for a in range(replicas):
            for b in range(a + 1, replicas):
                assert not sets[a] & sets[b]
    covered = set().union(*sets)
    if not drop_last:
        assert covered == set(range(n))
    elif n >= 2 * replicas:
        assert len(covered) >= n // 2


def test_epochs_shuffle_and_seed_reproduces():
    lengths = _lengths(200)

    def order(seed, epoch):
        s = FrameBudgetBatchSampler(lengths, 4000, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)
    unshuffled = FrameBudgetBatchSampler(lengths, 4000, shuffle=False)
    first = list(unshuffled)
    unshuffled.set_epoch(5)
    assert list(unshuffled) == first
    # batches group similar lengths
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first]
    assert np.mean(spread) < 0.2 * (max(lengths) - min(lengths))


def test_invalid_arguments():
    with pytest.raises(ValueError):
        FrameBudgetBatchSampler([10], 0)
    with pytest.raises(ValueError):
        FrameBudgetBatchSampler([10], 100, num_replicas=2, rank=2)


def test_a_lightning_fit_gets_a_new_order_every_epoch(tmp_path):
    """Lightning sets the epoch of the loader's batch sampler: epochs 0 and 1 differ."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    class Recorder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.batches: dict[int, list[list[int]]] = {}

        def training_step(self, batch, batch_idx):
            self.batches.setdefault(self.current_epoch, []).append(batch.tolist())
            return (self.weight * batch.float()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    lengths = list(range(10, 50))
    sampler = FrameBudgetBatchSampler(lengths, max_frames=120, shuffle=True, seed=3)
    loader = DataLoader(list(range(len(lengths))), batch_sampler=sampler)
    module = Recorder()
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(module, loader)
    first, second = module.batches[0], module.batches[1]
    assert sorted(i for b in first for i in b) == sorted(i for b in second for i in b)
    assert first != second
    sampler.set_epoch(1)
    assert second == [list(b) for b in sampler]  # epoch 1's own order
