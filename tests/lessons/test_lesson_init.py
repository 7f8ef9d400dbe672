"""Initialization lessons, proven with PyTorch: zero init (5), the classic std table, Xavier and He (6),
orthogonal and LSUV (7). Each test runs the lesson preset's own documents, step by step."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lesson_helpers import LN2, step_docs, train
from torch import nn

from server.builder import build_model
from server.trainer import LSUV_BATCH, Trainer

# ---------------------------------------------------------------------------
# Lesson 5: all-zero (or all-equal) weights never break the symmetry
# ---------------------------------------------------------------------------

STEPS = 200  # enough for Xavier to learn the circle and for any asymmetry to show


def hidden_rows(run) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The hidden layer's incoming weights (8, 2), biases (8,) and outputs over the validation set (N, 8)."""
    block = run.trainer.model.blocks["hidden"]
    with torch.no_grad():
        outputs = block(run.trainer.dataset.x_val)
    return block.core.weight.detach(), block.core.bias.detach(), outputs


def test_zero_init_leaves_every_hidden_unit_identical_and_the_loss_at_ln2():
    zeros, _constant, _xavier = step_docs("zero_init_symmetry")[1:]
    run = train(zeros, STEPS)
    weights, biases, outputs = hidden_rows(run)
    assert torch.equal(weights, torch.zeros_like(weights)) and torch.equal(biases, torch.zeros_like(biases))
    assert torch.equal(outputs, outputs[:, :1].expand_as(outputs))  # every unit computes the same (zero) function
    # Only the output bias learned: the prediction is the class frequency, the loss that of a coin.
    assert run.trainer.evaluate().loss == pytest.approx(LN2, abs=0.01)


def test_an_equal_constant_init_moves_the_units_but_keeps_them_identical():
    _zeros, constant, _xavier = step_docs("zero_init_symmetry")[1:]
    run = train(constant, STEPS)
    weights, biases, outputs = hidden_rows(run)
    assert not torch.allclose(weights, torch.full_like(weights, 0.5))  # they learned ...
    assert torch.equal(weights, weights[:1].expand_as(weights))        # ... all the same thing
    assert torch.equal(biases, biases[:1].expand_as(biases))
    assert torch.allclose(outputs, outputs[:, :1].expand_as(outputs))
    assert run.trainer.evaluate().accuracy < 0.75  # eight identical units are one unit: no circle


def test_the_symmetry_argument_in_plain_pytorch():
    """The oracle: in an equal-init net every hidden unit gets the same gradient, step after step."""
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
    for layer in (net[0], net[2]):
        nn.init.constant_(layer.weight, 0.5)
        nn.init.zeros_(layer.bias)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):  # the first step moves only the output layer; from the second the hidden units move too
        x, y = torch.randn(64, 2, generator=generator), torch.randint(0, 2, (64,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        grad = net[0].weight.grad
        assert torch.equal(grad, grad[:1].expand_as(grad))
        optimizer.step()
    assert grad.abs().sum() > 0 and torch.equal(net[0].weight, net[0].weight[:1].expand_as(net[0].weight))


def test_random_init_breaks_the_symmetry_and_learns_the_circle():
    xavier = step_docs("zero_init_symmetry")[3]
    run = train(xavier, STEPS)
    weights, _, _ = hidden_rows(run)
    assert torch.cdist(weights, weights).add(torch.eye(len(weights))).min() > 1e-3  # no two units alike
    assert run.trainer.evaluate().accuracy > 0.95


# ---------------------------------------------------------------------------
# Lesson 6: the classic table, Xavier for tanh, He for ReLU (unit-Gaussian input, 500-unit layers)
# ---------------------------------------------------------------------------


def layer_stds(document, x: torch.Tensor) -> list[float]:
    """The std of every layer's output for input ``x``, through the preset's freshly built network."""
    model, _ = build_model(document.network, tuple(x.shape[1:]), 10, seed=document.train.seed)
    stds = []
    with torch.no_grad():
        h = x
        for block in model.blocks.values():
            h = block(h)
            stds.append(h.std().item())
    return stds[:-1]  # the hidden layers (the last is the 10-class output)


@pytest.fixture(scope="module")
def gaussian_input() -> torch.Tensor:
    return torch.randn(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_small_random_init_shrinks_the_activations_by_0_22_per_layer(gaussian_input):
    """0.01*randn with 500 inputs scales the spread by 0.01*sqrt(500) = 0.224 at each tanh layer (tanh ~ linear there)."""
    stds = layer_stds(step_docs("deep_tanh_small_init")[0], gaussian_input)
    assert stds[0] == pytest.approx(math.tanh(0.01 * math.sqrt(784)), rel=0.1)  # the first layer sees 784 inputs
    for before, after in zip(stds[:4], stds[1:5]):
        assert after / before == pytest.approx(0.01 * math.sqrt(500), rel=0.05)
    assert stds[-1] < 1e-5  # ~0 at layer 10: the table's last row


def test_xavier_keeps_tanh_alive_collapses_with_relu_and_he_fixes_relu(gaussian_input):
    xavier_tanh, xavier_relu, he_relu = step_docs("deep_tanh_xavier")[1:]
    tanh_stds = layer_stds(xavier_tanh, gaussian_input)
    relu_stds = layer_stds(xavier_relu, gaussian_input)
    he_stds = layer_stds(he_relu, gaussian_input)
    assert min(tanh_stds) > 0.2                      # healthy all the way down
    # ReLU zeroes half the input: with Xavier (variance 1/n) each layer halves the variance, std x 1/sqrt(2).
    ratios = [b / a for a, b in zip(relu_stds[1:], relu_stds[2:])]
    assert sum(ratios) / len(ratios) == pytest.approx(1 / math.sqrt(2), rel=0.1)
    assert relu_stds[-1] < 0.06 * relu_stds[0]
    # He doubles the variance (2/n): the std holds.
    assert max(he_stds) / min(he_stds) < 1.2


# ---------------------------------------------------------------------------
# Lesson 7: orthogonal weights, and LSUV's unit output variance
# ---------------------------------------------------------------------------


def test_orthogonal_init_gives_orthogonal_weights_with_the_chosen_gain():
    docs = step_docs("orthogonal_lsuv_init")
    for document, gain in ((docs[0], 1.0), (docs[3], math.sqrt(2))):
        model, _ = build_model(document.network, (1, 8, 8), 10, seed=document.train.seed)
        for name, block in model.blocks.items():
            w = block.core.weight.detach().double()
            gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T  # orthonormal columns, or rows
            eye = torch.eye(gram.shape[0], dtype=torch.float64)
            assert torch.allclose(gram, gain**2 * eye, atol=1e-5), name


def core_output_variances(model, x: torch.Tensor) -> dict[str, float]:
    """Each layer's pre-activation (its core's output) variance on ``x``, read with forward hooks, eval mode."""
    seen: dict[str, float] = {}
    handles = [block.core.register_forward_hook(lambda m, i, out, name=name: seen.__setitem__(name, out.var().item()))
               for name, block in model.blocks.items()]
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train()
    return seen


def test_lsuv_scales_every_layer_to_unit_output_variance_where_the_default_init_fades():
    docs = step_docs("orthogonal_lsuv_init")
    lsuv = Trainer(docs[4], device="cpu")  # LSUV runs on a training batch when the trainer is built
    batch = lsuv.dataset.x_train[:LSUV_BATCH]  # the batch it measured on
    tolerance = docs[4].network.layers[0].weight_init.tolerance
    variances = core_output_variances(lsuv.model, batch)
    assert len(variances) == 9 and all(abs(v - 1.0) < tolerance for v in variances.values()), variances
    default = core_output_variances(Trainer(docs[5], device="cpu", dataset=lsuv.dataset).model, batch)
    hidden = [default[f"fc{i}"] for i in range(1, 9)]
    assert hidden[-1] < 0.01 * hidden[0]  # PyTorch's default init with ReLU: the variance fades layer by layer
