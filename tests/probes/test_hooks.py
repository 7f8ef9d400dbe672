"""ActivationRecorder: records what torch computes, owns and releases its hooks, leaks nothing."""

from __future__ import annotations

import gc
import tracemalloc
import weakref

import pytest
import torch
from torch import nn

from server.probes import ActivationRecorder, evaluating, no_grad_eval
from toy_nets import all_hooks, built_cnn, mlp, small_cnn


def _direct_chain(model, x):
    """Each block's output, computed by hand from the cores and activations, kept in the graph."""
    outs = {}
    h = x
    for name, block in model.blocks.items():
        h = block.act(block.core(h.flatten(1) if block.kind == "linear" and h.dim() > 2 else h))
        h.retain_grad()
        outs[name] = h
    return outs, h


def test_records_activations_and_output_grads_like_autograd():
    model = small_cnn()
    x = torch.randn(5, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1])
    with ActivationRecorder(model.blocks) as rec:
        nn.functional.cross_entropy(model(x), y).backward()

    outs, logits = _direct_chain(model, x)
    nn.functional.cross_entropy(logits, y).backward()
    assert list(rec.activations) == list(model.blocks)
    assert set(rec.output_grads) == set(model.blocks)
    for name, ref in outs.items():
        torch.testing.assert_close(rec.activations[name], ref.detach())
        torch.testing.assert_close(rec.output_grads[name], ref.grad)
        assert not rec.activations[name].requires_grad  # detached by default


def test_hooks_registered_then_released():
    model = mlp([3, 4, 4, 2])
    assert all_hooks(model) == 0
    with ActivationRecorder(model.blocks) as rec:
        assert rec.handles_count == 3
        assert all(len(b._forward_hooks) == 1 for b in model.blocks.values())
        model(torch.randn(2, 3, requires_grad=True)).sum().backward()
        assert rec.handles_count == 6  # + one tensor hook per output
    assert rec.handles_count == 0
    assert all_hooks(model) == 0
    assert all(not b._forward_hooks for b in model.blocks.values())
    rec.release()  # idempotent
    assert rec.activations  # recordings survive the release


def test_tensor_hooks_removed_from_live_outputs():
    model = mlp([3, 4, 2])
    with ActivationRecorder(model.blocks, detach=False) as rec:
        model(torch.randn(2, 3))
        live = rec.activations["fc1"]
        assert live.requires_grad and live._backward_hooks
    assert not live._backward_hooks


def test_released_after_exception_and_exception_propagates():
    model = mlp([3, 4, 2])
    with pytest.raises(RuntimeError, match="boom"):
        with ActivationRecorder(model.blocks) as rec:
            model(torch.randn(2, 3))
            raise RuntimeError("boom")
    assert rec.handles_count == 0
    assert all_hooks(model) == 0


def test_released_after_error_inside_forward():
    model = mlp([3, 4, 2])
    with pytest.raises(RuntimeError):
        with ActivationRecorder(model.blocks):
            model(torch.randn(2, 5))  # wrong width: the forward itself fails
    assert all_hooks(model) == 0


def test_no_grad_records_values_but_no_gradient_hooks():
    model = mlp([3, 4, 2])
    with torch.no_grad(), ActivationRecorder(model.blocks) as rec:
        model(torch.randn(2, 3))
        assert rec.handles_count == 2
    assert set(rec.activations) == {"fc1", "out"} and not rec.output_grads


def test_grads_false_registers_no_tensor_hooks():
    model = mlp([3, 4, 2])
    with ActivationRecorder(model.blocks, grads=False) as rec:
        model(torch.randn(2, 3)).sum().backward()
        assert rec.handles_count == 2
    assert not rec.output_grads


def test_clear_drops_recordings():
    model = mlp([3, 4, 2])
    with ActivationRecorder(model.blocks) as rec:
        model(torch.randn(2, 3)).sum().backward()
    rec.clear()
    assert not rec.activations and not rec.output_grads


def _count_tensors() -> int:
    gc.collect()
    # type() rather than isinstance(): isinstance would poke lazy module attributes.
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


def test_no_memory_growth_over_many_cycles():
    model = mlp([8, 16, 16, 3])
    x = torch.randn(4, 8)

    def cycle():
        with ActivationRecorder(model.blocks) as rec:
            model(x).square().mean().backward()
        model.zero_grad(set_to_none=True)
        return weakref.ref(rec)

    for _ in range(5):  # warm-up: autograd and allocator caches
        cycle()
    tensors_before = _count_tensors()
    tracemalloc.start()
    try:
        cycle()
        gc.collect()
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(200):
            cycle()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert _count_tensors() == tensors_before
    assert all_hooks(model) == 0
    # A leak of one small object (a dict, a tensor wrapper) per cycle would be well over 10 kB.
    assert grown < 10_000, grown
    ref = cycle()
    gc.collect()
    assert ref() is None, "a released recorder must be collectable"

def test_evaluating_restores_each_submodules_mode():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.BatchNorm1d(2))
    model.train()
    model[2].eval()  # a deliberately frozen norm layer
    with evaluating(model):
        assert not any(m.training for m in model.modules())
    assert model.training and model[1].training and not model[2].training


def test_no_grad_eval_restores_mode_after_exception():
    model = mlp([2, 2])
    model.train()
    with pytest.raises(ValueError):
        with no_grad_eval(model):
            assert not torch.is_grad_enabled()
            raise ValueError
    assert model.training and torch.is_grad_enabled()

# ---------------------------------------------------------------------------
# With the builder's GraphModel
# ---------------------------------------------------------------------------


def test_recorder_on_built_graph_model():
    model = built_cnn().eval()  # dropout off: the hand-made second pass must see the same network
    x = torch.randn(4, 3, 12, 12)
    with ActivationRecorder(model.blocks) as rec:
        logits = model(x)
        nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    assert list(rec.activations) == ["conv1", "pool", "block2.conv", "fc", "drop", "out"]
    assert rec.activations["conv1"].shape == (4, 4, 12, 12)
    assert rec.activations["pool"].shape == (4, 4, 6, 6)
    assert rec.activations["fc"].shape == (4, 16)
    torch.testing.assert_close(rec.activations["out"], logits.detach())
    # the first conv's output gradient, checked by hand through autograd
    with torch.no_grad():
        a1 = model.blocks["conv1"](x)
    a1.requires_grad_(True)
    h = a1
    for name in ["pool", "block2.conv", "fc", "drop", "out"]:
        h = model.blocks[name](h)
    nn.functional.cross_entropy(h, torch.tensor([0, 1, 2, 3])).backward()
    torch.testing.assert_close(rec.output_grads["conv1"], a1.grad)
    assert all_hooks(model) == 0


def test_training_only_skips_eval_mode_calls():
    """A probed step that ends with an evaluation must keep the training batch's activations."""
    import torch
    from torch import nn

    from server.probes import ActivationRecorder

    layer = nn.Linear(3, 2)
    x_train, x_eval = torch.ones(4, 3), torch.zeros(5, 3)
    with ActivationRecorder({"fc": layer}, grads=False, training_only=True) as recorder:
        layer(x_train)
        layer.eval()
        layer(x_eval)
    torch.testing.assert_close(recorder.activations["fc"], layer(x_train).detach())
