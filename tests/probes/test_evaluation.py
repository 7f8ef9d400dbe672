"""Confusion matrix, confident mistakes and single predictions against manual counts and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from server.probes import class_probs, confusion, most_confident_mistakes, predict
from server.probes.evaluation import MAX_CELL_EXAMPLES
from toy_nets import Block, ToyNet, all_hooks, built_cnn, built_mlp2d, mlp


@pytest.fixture
def setup():
    net = mlp([4, 8, 3], act=nn.ReLU, seed=3)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(300, 4, generator=g)
    y = torch.randint(0, 3, (300,), generator=g)
    return net, x, y


def test_confusion_equals_manual_count(setup):
    net, x, y = setup
    c = confusion(net, x, y, 3, batch=7)  # batches of 7: the tail batch too
    with torch.no_grad():
        pred = net(x).argmax(1)
    manual = np.zeros((3, 3), dtype=np.int64)
    cells: dict[tuple[int, int], list[int]] = {}
    for i, (t, p) in enumerate(zip(y.tolist(), pred.tolist())):
        manual[t, p] += 1
        cells.setdefault((t, p), []).append(i)
    np.testing.assert_array_equal(c.matrix, manual)
    assert c.n == 300 and c.accuracy == pytest.approx((pred == y).float().mean().item())
    for t in range(3):
        assert c.per_class_accuracy[t] == pytest.approx(manual[t, t] / manual[t].sum())
    assert c.cell_examples == {k: v[:MAX_CELL_EXAMPLES] for k, v in cells.items()}
    assert all(len(v) <= 16 for v in c.cell_examples.values())


def test_confusion_same_for_any_batch_size(setup):
    net, x, y = setup
    np.testing.assert_array_equal(confusion(net, x, y, 3, batch=1024).matrix, confusion(net, x, y, 3, batch=13).matrix)


def test_absent_class_has_no_accuracy(setup):
    net, x, _ = setup
    y = torch.zeros(300, dtype=torch.long)
    c = confusion(net, x, y, 4)
    assert c.matrix.shape == (4, 4) and c.per_class_accuracy[1:] == [None, None, None]
    assert c.matrix[1:].sum() == 0


def test_binary_single_output_model():
    net = mlp([2, 5, 1], act=nn.Tanh, seed=1)
    x = torch.randn(200, 2)
    y = (x[:, 0] > 0).long()
    c = confusion(net, x, y, 2)
    with torch.no_grad():
        z = net(x)[:, 0]
    pred = (z > 0).long()
    manual = np.zeros((2, 2), dtype=np.int64)
    np.add.at(manual, (y.numpy(), pred.numpy()), 1)
    np.testing.assert_array_equal(c.matrix, manual)

    p = predict(net, x[:1])
    p1 = torch.sigmoid(z[0]).item()
    assert p.probs == pytest.approx([1 - p1, p1]) and p.predicted == int(z[0] > 0)

    mistakes = most_confident_mistakes(net, x, y, k=5)
    assert len(mistakes) == 5
    for m in mistakes:
        assert m.predicted == int(z[m.index] > 0) != m.true
        q = torch.sigmoid(z[m.index]).item()
        assert m.confidence == pytest.approx(max(q, 1 - q))


def test_labels_out_of_range_are_an_error(setup):
    net, x, y = setup
    with pytest.raises(ValueError, match="num_classes"):
        confusion(net, x, y, 2)  # the model has 3 outputs
    with pytest.raises(ValueError, match="labels"):
        confusion(net, x, y + 1, 3)


def test_most_confident_mistakes_equal_manual_ranking(setup):
    net, x, y = setup
    result = most_confident_mistakes(net, x, y, k=10)
    with torch.no_grad():
        probs = torch.softmax(net(x), dim=1)
    conf, pred = probs.max(1)
    wrong = [(conf[i].item(), i) for i in range(300) if pred[i] != y[i]]
    wrong.sort(reverse=True)
    assert [m.index for m in result] == [i for _, i in wrong[:10]]
    for m in result:
        assert m.true == y[m.index].item() and m.predicted == pred[m.index].item() != m.true
        assert m.confidence == pytest.approx(conf[m.index].item())
    assert all(a.confidence >= b.confidence for a, b in zip(result, result[1:]))


def test_fewer_mistakes_than_k():
    lin = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(2))
    net = ToyNet({"out": Block("linear", lin)})
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    y = torch.tensor([0, 1, 1])  # only the last one is wrong
    (m,) = most_confident_mistakes(net, x, y, k=16)
    assert (m.index, m.true, m.predicted) == (2, 1, 0)


def test_shared_probs_give_the_same_results(setup):
    net, x, y = setup
    probs = class_probs(net, x, batch=50)
    np.testing.assert_array_equal(confusion(None, x, y, 3, probs=probs).matrix, confusion(net, x, y, 3).matrix)
    assert most_confident_mistakes(None, x, y, probs=probs) == most_confident_mistakes(net, x, y)


def test_predict_is_softmax(setup):
    net, x, _ = setup
    p = predict(net, x[3:4])
    with torch.no_grad():
        expected = torch.softmax(net(x[3:4]), dim=1)[0]
    assert p.probs == pytest.approx(expected.tolist(), abs=1e-6)
    assert p.predicted == expected.argmax().item()
    with pytest.raises(ValueError, match=r"\(1, \.\.\.\)"):
        predict(net, x[:2])


def test_mode_restored_and_no_hooks(setup):
    net, x, y = setup
    net.train()
    confusion(net, x, y, 3)
    most_confident_mistakes(net, x, y)
    predict(net, x[:1])
    assert net.training and all_hooks(net) == 0

# ---------------------------------------------------------------------------
# With the builder's GraphModel
# ---------------------------------------------------------------------------


def test_evaluation_of_built_models():
    model = built_cnn()
    x = torch.rand(50, 3, 12, 12)
    y = torch.randint(0, 10, (50,), generator=torch.Generator().manual_seed(0))
    c = confusion(model, x, y, 10, batch=16)
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(1)
    model.train()
    manual = np.zeros((10, 10), dtype=np.int64)
    np.add.at(manual, (y.numpy(), pred.numpy()), 1)
    np.testing.assert_array_equal(c.matrix, manual)
    assert len(predict(model, x[:1]).probs) == 10

    binary = built_mlp2d()
    pts = torch.randn(40, 2)
    labels = (pts[:, 1] > 0).long()
    cb = confusion(binary, pts, labels, 2)
    with torch.no_grad():
        zb = binary(pts)[:, 0]
    assert cb.matrix.sum() == 40
    assert cb.accuracy == pytest.approx(((zb > 0).long() == labels).float().mean().item())

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
def test_evaluation_on_cuda_equals_cpu(setup):
    net, x, y = setup
    cpu = confusion(net, x, y, 3)
    cpu_mistakes = most_confident_mistakes(net, x, y)
    net.cuda()
    gpu = confusion(net, x.cuda(), y.cuda(), 3)
    np.testing.assert_array_equal(gpu.matrix, cpu.matrix)
    assert [m.index for m in most_confident_mistakes(net, x.cuda(), y.cuda())] == [m.index for m in cpu_mistakes]
    assert predict(net, x[:1].cuda()).predicted == predict(net.cpu(), x[:1]).predicted
