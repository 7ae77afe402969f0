"""Atomic writes: the whole file or the old one, the usual file mode, no temporary file left."""

import os

import pytest
import torch

from recipes.toolkit.run.atomic import atomic_torch_save, atomic_write, atomic_write_text
from recipes.toolkit.run.checkpoint_io import AtomicCheckpointIO


def umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def test_results_and_checkpoints_get_the_usual_mode_not_a_temp_files(tmp_path):
    text = atomic_write_text(tmp_path / "results.json", "{}\n")
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1}, ckpt)
    tensor = atomic_torch_save(torch.arange(3), tmp_path / "cache" / "train.pt")
    for path in (text, ckpt, tensor):
        assert path.stat().st_mode & 0o777 == umask_mode(), path
    assert torch.load(ckpt, weights_only=True) == {"epoch": 1}
    assert torch.equal(torch.load(tensor, weights_only=True), torch.arange(3))


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_beside_it(tmp_path):
    path = atomic_write_text(tmp_path / "results.json", "old\n")

    def half_then_fail(handle):
        handle.write(b"new but torn")
        raise KeyboardInterrupt("killed mid-write")

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
