"""Losses against torch's own modules (and hand formulas where torch has none)."""

import math

import pytest
import torch
import torch.nn.functional as F

from server.losses import build_objective, perceptron_objective


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    out = torch.randn(16, 5, generator=g, requires_grad=True)
    y = torch.randint(0, 5, (16,), generator=g)
    return out, y


def test_cross_entropy_is_torch_cross_entropy(batch):
    out, y = batch
    assert torch.equal(build_objective("cross_entropy", 5).loss(out, y), torch.nn.CrossEntropyLoss()(out, y))


def test_mse_is_half_squared_distance_to_onehot_per_example(batch):
    out, y = batch
    got = build_objective("mse", 5).loss(out, y)
    onehot = F.one_hot(y, 5).float()
    manual = (0.5 * ((out - onehot) ** 2).sum(1)).mean()
    torch_ref = torch.nn.MSELoss(reduction="sum")(out, onehot) / 2 / out.shape[0]
    torch.testing.assert_close(got, manual)
    torch.testing.assert_close(got, torch_ref)
    # gradient is (out - onehot) / N
    (g,) = torch.autograd.grad(got, out)
    torch.testing.assert_close(g, (out - onehot).detach() / out.shape[0])


def test_hinge_is_multi_margin_loss(batch):
    out, y = batch
    assert torch.equal(build_objective("hinge", 5).loss(out, y), torch.nn.MultiMarginLoss()(out, y))


def test_zero_outputs_give_the_textbook_initial_losses():
    out, y = torch.zeros(8, 10), torch.arange(8)
    assert build_objective("cross_entropy", 10).loss(out, y).item() == pytest.approx(math.log(10))
    assert build_objective("mse", 10).loss(out, y).item() == pytest.approx(0.5)
    assert build_objective("hinge", 10).loss(out, y).item() == pytest.approx(9 / 10)


@pytest.fixture
def binary():
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 1, generator=g), torch.randint(0, 2, (32,), generator=g)


def test_binary_cross_entropy_is_bce_with_logits(binary):
    z, y = binary
    ref = torch.nn.BCEWithLogitsLoss()(z.squeeze(1), y.float())
    torch.testing.assert_close(build_objective("cross_entropy", 1).loss(z, y), ref)
    # and equals 2-class softmax CE on logits (0, z)
    two = torch.cat([torch.zeros_like(z), z], 1)
    torch.testing.assert_close(build_objective("cross_entropy", 1).loss(z, y), F.cross_entropy(two, y))


def test_binary_mse_targets_zero_one(binary):
    z, y = binary
    ref = 0.5 * torch.nn.MSELoss()(z.squeeze(1), y.float())
    torch.testing.assert_close(build_objective("mse", 1).loss(z, y), ref)


def test_binary_hinge_targets_plus_minus_one(binary):
    z, y = binary
    t = y.float() * 2 - 1
    manual = torch.clamp(1 - t * z.squeeze(1), min=0).mean()
    torch.testing.assert_close(build_objective("hinge", 1).loss(z, y), manual)
    # torch oracle: 2 x MultiMarginLoss on outputs (-z/2, z/2)
    two = torch.cat([-z / 2, z / 2], 1)
    torch.testing.assert_close(build_objective("hinge", 1).loss(z, y), 2 * torch.nn.MultiMarginLoss()(two, y))


def test_predictions_and_correct_counts(batch, binary):
    out, y = batch
    obj = build_objective("cross_entropy", 5)
    assert torch.equal(obj.predict(out), out.argmax(1))
    assert obj.correct(out, y).item() == (out.argmax(1) == y).sum().item()
    z, yb = binary
    assert torch.equal(build_objective("hinge", 1).predict(z), (z.squeeze(1) > 0).long())
    assert torch.equal(build_objective("mse", 1).predict(z), (z.squeeze(1) > 0.5).long())
    assert build_objective("cross_entropy", 1).correct(z, yb).dtype == torch.int64


def test_perceptron_zero_one_loss():
    out = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
    y = torch.tensor([1, 0, 0, 0])
    obj = perceptron_objective()
    assert obj.loss(out, y).item() == pytest.approx(0.25)
    assert obj.correct(out, y).item() == 3


def test_unknown_loss_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown loss 'l3'.*cross_entropy"):
        build_objective("l3", 3)
