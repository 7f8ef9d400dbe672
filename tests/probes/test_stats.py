"""Statistics probes against direct torch computations of the same tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from server.probes import (
    ActivationRecorder,
    activation_name,
    activation_stats,
    gradient_stats,
    snapshot_params,
    stats_many,
    tensor_stats,
    update_ratios,
)
from toy_nets import Block, ToyNet, built_cnn, mlp


def _assert_matches_torch(s, x: torch.Tensor, bins: int) -> None:
    """Check a TensorStats against torch on the finite values of ``x``."""
    v = x[torch.isfinite(x)].float()
    assert s.n == v.numel() and s.nonfinite == x.numel() - v.numel()
    assert s.mean == pytest.approx(v.mean().item(), rel=1e-5, abs=1e-6)
    assert s.std == pytest.approx(v.std().item(), rel=1e-5, abs=1e-6)
    assert s.min == v.min().item() and s.max == v.max().item()
    expected = torch.histc(v, bins, min=v.min().item(), max=v.max().item())
    assert s.hist == [int(c) for c in expected.tolist()]
    lo, hi = (v.min().item(), v.max().item()) if v.min() < v.max() else (v.min().item() - 1, v.max().item() + 1)
    edges = torch.tensor(s.edges, dtype=torch.float64)
    torch.testing.assert_close(edges, torch.linspace(lo, hi, bins + 1, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(1000,), (64, 10), (8, 3, 5, 5)])
@pytest.mark.parametrize("bins", [4, 32, 100])
def test_tensor_stats_match_torch(shape, bins):
    g = torch.Generator().manual_seed(sum(shape) + bins)
    x = torch.randn(shape, generator=g) * 3 + 0.5
    _assert_matches_torch(tensor_stats(x, bins), x, bins)


def test_histogram_counts_values_on_the_edges_like_histc():
    x = torch.cat([torch.randn(500), torch.linspace(-2, 2, 33)])
    _assert_matches_torch(tensor_stats(x, 32), x, 32)


def test_constant_tensor_uses_histc_range():
    x = torch.full((7, 3), 2.5)
    s = tensor_stats(x, 4)
    assert s.std == 0 and s.mean == 2.5 and s.min == s.max == 2.5
    assert s.hist == [int(c) for c in torch.histc(x, 4, min=2.5, max=2.5).tolist()]
    assert s.edges == [1.5, 2.0, 2.5, 3.0, 3.5]


def test_nonfinite_values_are_counted_apart():
    x = torch.randn(200)
    x[[3, 10, 50]] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    s = tensor_stats(x, 16)
    assert s.nonfinite == 3
    _assert_matches_torch(s, x, 16)


def test_all_nonfinite_and_empty():
    s = tensor_stats(torch.full((4,), float("nan")), 8)
    assert (s.n, s.nonfinite, s.mean, s.std, sum(s.hist)) == (4 - 4, 4, 0.0, 0.0, 0)
    assert tensor_stats(torch.zeros(0), 8).n == 0


def test_huge_values_keep_finite_moments():
    x = torch.randn(1000, dtype=torch.float64) * 1e30
    s = tensor_stats(x.float(), 8)
    assert s.std == pytest.approx(x.std().item(), rel=1e-4)
    assert s.mean == pytest.approx(x.mean().item(), rel=1e-3, abs=1e25)


def test_single_value_has_zero_std():
    s = tensor_stats(torch.tensor([3.0]), 4)
    assert s.std == 0 and s.n == 1


def test_stats_many_equals_one_by_one():
    xs = [torch.randn(10), torch.randn(3, 4) * 5]
    assert stats_many(xs, 8) == [tensor_stats(x, 8) for x in xs]


def test_activation_name():
    assert activation_name(Block("linear", nn.Linear(1, 1), nn.LeakyReLU(0.1))) == "leaky_relu"
    assert activation_name(Block("linear", nn.Linear(1, 1))) == "identity"
    assert activation_name(nn.Tanh()) == "tanh"
    assert activation_name(nn.Linear(2, 2)) == "identity"

    class MaxoutActivation(nn.Module):
        pass

    assert activation_name(Block("linear", nn.Linear(1, 1), MaxoutActivation())) == "maxout"


# ---------------------------------------------------------------------------
# Dead and saturated units
# ---------------------------------------------------------------------------


def _dead_relu_linear(act: nn.Module) -> Block:
    """Linear 4 -> 10 on inputs in [0, 1]: units 0, 3 and 7 have negative weights and bias, so they
    are negative for every input; the others have positive weights and bias."""
    lin = nn.Linear(4, 10)
    with torch.no_grad():
        lin.weight.fill_(0.5)
        lin.bias.fill_(0.1)
        for u in (0, 3, 7):
            lin.weight[u].fill_(-1.0)
            lin.bias[u] = -0.5
    return Block("linear", lin, act)


@pytest.mark.parametrize("act", [nn.ReLU(), nn.LeakyReLU(0.1), nn.PReLU(), nn.ELU()])
def test_dead_fraction_on_hand_built_layer(act):
    net = ToyNet({"h": _dead_relu_linear(act)})
    x = torch.rand(64, 4)
    with ActivationRecorder(net.blocks) as rec:
        net(x)
    (s,) = activation_stats(rec.activations, net.blocks, 8)
    assert s.dead_fraction == pytest.approx(3 / 10)
    assert s.saturated_fraction is None
    a = rec.activations["h"]
    direct = (a <= 0).all(dim=0) if isinstance(act, nn.ReLU) else (a < 0).all(dim=0)
    assert s.dead_fraction == pytest.approx(direct.float().mean().item())


def test_relu_unit_alive_for_one_example_is_not_dead():
    lin = nn.Linear(1, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        lin.bias.zero_()
    net = ToyNet({"h": Block("linear", lin, nn.ReLU())})
    x = torch.tensor([[-1.0], [-2.0], [0.5]])  # unit 0 fires once, unit 1 fires twice
    with ActivationRecorder(net.blocks) as rec:
        net(x)
    assert activation_stats(rec.activations, net.blocks)[0].dead_fraction == 0.0


def test_dead_channels_of_a_conv_layer():
    conv = nn.Conv2d(1, 6, 3, padding=1)
    with torch.no_grad():
        conv.weight.fill_(0.2)
        conv.bias.fill_(0.1)
        conv.weight[[1, 4]] = -0.2
        conv.bias[[1, 4]] = -0.1
    net = ToyNet({"c": Block("conv2d", conv, nn.ReLU())})
    with ActivationRecorder(net.blocks) as rec:
        net(torch.rand(5, 1, 7, 7))
    a = rec.activations["c"]
    (s,) = activation_stats(rec.activations, net.blocks)
    assert s.dead_fraction == pytest.approx(2 / 6)
    assert s.dead_fraction == pytest.approx((a <= 0).all(dim=3).all(dim=2).all(dim=0).float().mean().item())
    assert s.kind == "conv2d" and s.act == "relu"


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_saturated_fraction(act):
    torch.manual_seed(1)
    module = nn.Tanh() if act == "tanh" else nn.Sigmoid()
    lin = nn.Linear(20, 30)
    with torch.no_grad():
        lin.weight.normal_(0, 1.0)  # pre-activations of std ~4.5: a good share saturates
    net = ToyNet({"h": Block("linear", lin, module)})
    with ActivationRecorder(net.blocks) as rec:
        net(torch.randn(100, 20))
    a = rec.activations["h"]
    (s,) = activation_stats(rec.activations, net.blocks)
    direct = a.abs() > 0.99 if act == "tanh" else (a < 0.01) | (a > 0.99)
    assert 0.2 < s.saturated_fraction < 0.9
    assert s.saturated_fraction == pytest.approx(direct.float().mean().item())
    assert s.dead_fraction is None
    _assert_matches_torch(s.stats, a, 32)


def test_activation_stats_follow_layer_order_and_skip_unrecorded():
    net = mlp([3, 5, 5, 2], act=nn.ReLU)
    acts = {"out": torch.randn(4, 2), "fc1": torch.rand(4, 5)}
    result = activation_stats(acts, net.blocks, 8)
    assert [s.layer for s in result] == ["fc1", "out"]
    assert result[1].act == "identity" and result[1].dead_fraction is None


def test_activation_stats_make_one_host_transfer(monkeypatch):
    net = mlp([3, 5, 5, 2], act=nn.ReLU)
    with ActivationRecorder(net.blocks) as rec:
        net(torch.randn(8, 3))
    calls = {"tolist": 0}
    real_tolist = torch.Tensor.tolist

    def counting_tolist(self):
        calls["tolist"] += 1
        return real_tolist(self)

    def forbidden(self, *a, **k):
        raise AssertionError("per-element transfer")

    monkeypatch.setattr(torch.Tensor, "tolist", counting_tolist)
    monkeypatch.setattr(torch.Tensor, "item", forbidden)
    monkeypatch.setattr(torch.Tensor, "cpu", forbidden)
    activation_stats(rec.activations, net.blocks, 16)
    assert calls["tolist"] == 1


# ---------------------------------------------------------------------------
# The collapse of a deep tanh network (CS231n, "Weight initialization")
# ---------------------------------------------------------------------------


@pytest.fixture
def one_thread():
    """Run single-threaded: 10 x (1000 x 500) activations are quick on one core, while an
    oversubscribed CI box makes torch's thread pool spin (10x slower); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _deep_tanh(std: float) -> ToyNet:
    torch.manual_seed(0)
    blocks = {}
    for i in range(10):
        lin = nn.Linear(500, 500, bias=False)
        with torch.no_grad():
            lin.weight.normal_(0.0, std)
        blocks[f"h{i + 1}"] = Block("linear", lin, nn.Tanh())
    return ToyNet(blocks)


def _layer_stds(net: ToyNet, x: torch.Tensor) -> list[float]:
    with torch.no_grad(), ActivationRecorder(net.blocks, grads=False) as rec:
        net(x)
    return [s.stats.std for s in activation_stats(rec.activations, net.blocks, 32)]


def test_small_init_collapses_activations(one_thread):
    net = _deep_tanh(0.01)
    x = torch.randn(1000, 500, generator=torch.Generator().manual_seed(1))
    stds = _layer_stds(net, x)

    # Independent chain: plain tensor algebra on the same weights.
    expected, h = [], x
    for block in net.blocks.values():
        h = torch.tanh(h @ block.core.weight.T)
        expected.append(h.std().item())
    assert stds == pytest.approx(expected, rel=1e-4)
    # Each layer multiplies the std by about 0.01 * sqrt(500) = 0.22: 0.21, 0.047, 0.011, ...
    assert stds[0] == pytest.approx(0.21, rel=0.2)
    assert all(b < a / 4 for a, b in zip(stds, stds[1:]))
    assert stds[-1] < 1e-5


def test_xavier_init_keeps_activations_alive(one_thread):
    net = _deep_tanh(1 / math.sqrt(500))
    x = torch.randn(1000, 500, generator=torch.Generator().manual_seed(1))
    stds = _layer_stds(net, x)
    assert stds[-1] > 0.1


# ---------------------------------------------------------------------------
# Gradients and updates
# ---------------------------------------------------------------------------


def test_gradient_stats_match_torch():
    net = mlp([4, 6, 3], act=nn.Tanh)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    with ActivationRecorder(net.blocks) as rec:
        nn.functional.cross_entropy(net(x), y).backward()
    result = gradient_stats(net.named_parameters(), rec.output_grads)
    params = dict(net.named_parameters())
    by_source = {(g.source, g.name): g for g in result}
    assert len(result) == len(params) + 2
    for name, p in params.items():
        g = by_source[("param", name)]
        assert g.norm == pytest.approx(torch.linalg.vector_norm(p.grad).item(), rel=1e-5)
        assert g.std == pytest.approx(p.grad.std().item(), rel=1e-5)
        assert g.mean_abs == pytest.approx(p.grad.abs().mean().item(), rel=1e-5)
    for name, grad in rec.output_grads.items():
        g = by_source[("output", name)]
        assert g.norm == pytest.approx(grad.norm().item(), rel=1e-5)
        assert g.std == pytest.approx(grad.std().item(), rel=1e-5)
    assert [g.source for g in result] == ["param"] * len(params) + ["output"] * 2


def test_gradient_stats_skip_params_without_grad():
    net = mlp([4, 6, 3])
    net.blocks["fc1"].core.weight.requires_grad_(False)
    net(torch.randn(2, 4)).sum().backward()
    names = [g.name for g in gradient_stats(net.named_parameters())]
    assert "blocks.fc1.core.weight" not in names and "blocks.fc1.core.bias" in names


def test_update_ratio_of_an_sgd_step():
    net = mlp([4, 6, 3])
    with torch.no_grad():
        net.blocks["out"].core.bias.zero_()
    before = snapshot_params(net)
    net(torch.randn(8, 4)).square().mean().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    lr = 1e-2
    torch.optim.SGD(net.parameters(), lr=lr).step()
    ratios = {r.name: r.ratio for r in update_ratios(before, net.named_parameters())}
    for name, p in net.named_parameters():
        w0 = before[name]
        denom = w0.norm() if w0.norm() > 0 else p.detach().norm()
        assert ratios[name] == pytest.approx((lr * grads[name].norm() / denom).item(), rel=1e-4)
    # the zero bias is measured against its new value: ||dw|| / ||w_after|| = 1
    assert ratios["blocks.out.core.bias"] == pytest.approx(1.0)


def test_snapshot_is_a_detached_clone():
    net = mlp([2, 2])
    snap = snapshot_params(net)
    with torch.no_grad():
        net.blocks["out"].core.weight.add_(1.0)
    assert not torch.equal(snap["blocks.out.core.weight"], net.blocks["out"].core.weight)
    assert not snap["blocks.out.core.weight"].requires_grad
    assert update_ratios(snap, snapshot_params(net))[0].ratio > 0

# ---------------------------------------------------------------------------
# With the builder's GraphModel
# ---------------------------------------------------------------------------


def test_light_probes_on_built_graph_model():
    model = built_cnn()
    x, y = torch.randn(8, 3, 12, 12), torch.randint(0, 10, (8,))
    before = snapshot_params(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with ActivationRecorder(model.blocks) as rec:
        nn.functional.cross_entropy(model(x), y).backward()
    opt.step()

    acts = activation_stats(rec.activations, model.blocks, 16)
    by_layer = {s.layer: s for s in acts}
    assert [s.layer for s in acts] == list(model.blocks)
    assert (by_layer["conv1"].kind, by_layer["conv1"].act) == ("conv2d", "relu")
    assert by_layer["block2.conv"].act == "tanh" and by_layer["fc"].act == "sigmoid"
    a = rec.activations["conv1"]
    assert by_layer["conv1"].dead_fraction == pytest.approx(
        (a <= 0).transpose(0, 1).reshape(4, -1).all(dim=1).float().mean().item()
    )
    t = rec.activations["block2.conv"]
    assert by_layer["block2.conv"].saturated_fraction == pytest.approx((t.abs() > 0.99).float().mean().item())
    assert by_layer["pool"].dead_fraction is None and by_layer["pool"].saturated_fraction is None
    for s in acts:
        _assert_matches_torch(s.stats, rec.activations[s.layer], 16)

    grads = gradient_stats(model.named_parameters(), rec.output_grads)
    params = dict(model.named_parameters())
    for g in grads:
        ref = params[g.name].grad if g.source == "param" else rec.output_grads[g.name]
        assert g.norm == pytest.approx(ref.norm().item(), rel=1e-5)
    assert {g.name for g in grads if g.source == "output"} == set(model.blocks)

    ratios = update_ratios(before, model.named_parameters())
    assert len(ratios) == len(params)
    for r in ratios:
        expected = (0.1 * params[r.name].grad.norm() / before[r.name].norm()).item()
        assert r.ratio == pytest.approx(expected, rel=1e-4)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
def test_stats_on_cuda_equal_cpu():
    x = torch.randn(300, 20)
    x[0, 0] = float("nan")
    assert tensor_stats(x.cuda(), 16).hist == tensor_stats(x, 16).hist
    net = mlp([20, 30, 4], act=nn.ReLU)
    results = []
    for device in ("cpu", "cuda"):
        model = mlp([20, 30, 4], act=nn.ReLU).to(device)
        model.load_state_dict(net.state_dict())
        before = snapshot_params(model)
        with ActivationRecorder(model.blocks) as rec:
            model(torch.nan_to_num(x).to(device)).square().mean().backward()
        torch.optim.SGD(model.parameters(), lr=0.1).step()
        results.append(
            (
                activation_stats(rec.activations, model.blocks, 8),
                gradient_stats(model.named_parameters(), rec.output_grads),
                update_ratios(before, model.named_parameters()),
            )
        )
    (acts_cpu, grads_cpu, ratios_cpu), (acts_gpu, grads_gpu, ratios_gpu) = results
    for a, b in zip(acts_cpu, acts_gpu):
        assert a.dead_fraction == b.dead_fraction and a.stats.n == b.stats.n
        assert a.stats.std == pytest.approx(b.stats.std, rel=1e-4)
    for a, b in zip(grads_cpu, grads_gpu):
        assert a.norm == pytest.approx(b.norm, rel=1e-4)
    for a, b in zip(ratios_cpu, ratios_gpu):
        assert a.ratio == pytest.approx(b.ratio, rel=1e-4)


def test_a_large_tensors_histogram_counts_an_even_sample_and_the_rest_every_value():
    from server.probes.stats import MAX_HISTOGRAM_VALUES

    big = torch.randn(64, 6, 28, 28, generator=torch.Generator().manual_seed(0)) * 3 + 1  # a LeNet conv output
    result = tensor_stats(big, 32)
    flat = big.reshape(-1)
    stride = -(-flat.numel() // MAX_HISTOGRAM_VALUES)
    lo, hi = flat.min().item(), flat.max().item()
    assert result.hist == torch.histc(flat[::stride], 32, lo, hi).long().tolist()  # torch's own, on the sample
    assert result.n == flat.numel()
    assert (result.min, result.max) == (lo, hi)
    assert result.mean == pytest.approx(flat.mean().item(), abs=1e-5)
    assert result.std == pytest.approx(flat.std().item(), rel=1e-5)
    full = torch.histc(flat, 32, lo, hi) / flat.numel()
    assert (torch.tensor(result.hist) / sum(result.hist) - full).abs().max() < 0.01  # the bars keep their shape
