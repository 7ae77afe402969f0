"""The private torch and Lightning names the project relies on exist in the locked versions."""

import lightning
import torch

from recipes.toolkit.run import lightning_internals
from rnnlib import torch_internals


def test_torch_has_every_private_name_rnnlib_uses():
    missing = torch_internals.missing_names()
    assert not missing, f"torch {torch.__version__} no longer has: {'; '.join(missing)}"


def test_onednn_product_is_there_on_this_build_or_falls_back():
    missing = torch_internals.missing_names(torch_internals.OPTIONAL)
    if torch.backends.mkldnn.is_available():  # the locked x86 build has it: losing it is silent
        assert not missing, f"torch {torch.__version__} no longer has: {'; '.join(missing)}"
        assert torch_internals.onednn_linear_available()
        x, w = torch.randn(5, 3), torch.randn(4, 3)
        assert torch.allclose(torch_internals.onednn_product(x, w), x @ w.t(), atol=1e-6)
    else:
        assert not torch_internals.onednn_linear_available()


def test_lightning_has_every_private_name_the_recipes_use():
    missing = lightning_internals.missing_names()
    assert not missing, f"lightning {lightning.__version__} no longer has: {'; '.join(missing)}"


def test_a_removed_name_is_reported_with_its_reason(monkeypatch):
    gone = {"torch.ops.aten.no_such_op": "why we need it", "torch.no_such_function": "another"}
    assert torch_internals.missing_names(gone) == [
        "torch.ops.aten.no_such_op (why we need it)",
        "torch.no_such_function (another)",
    ]
    monkeypatch.setitem(
        lightning_internals.REQUIRED, "lightning.fabric.utilities.seed:_no_such_name", "a reason"
    )
    monkeypatch.setitem(lightning_internals.REQUIRED, "lightning.no_such_module:x", "other")
    assert lightning_internals.missing_names() == [
        "lightning.fabric.utilities.seed:_no_such_name (a reason)",
        "lightning.no_such_module:x (other)",
    ]
