"""The scalar backprop trace, computed by hand in Python floats, checked against torch autograd."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from server.probes.backprop_trace import MAX_NODES, Trace, backprop_trace, count_nodes, mlp_layers
from toy_nets import mlp


def lecture_net() -> nn.Sequential:
    """2 inputs, 2 sigmoid hidden units, 1 sigmoid output, with fixed weights."""
    net = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 1), nn.Sigmoid())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.15, 0.20], [0.25, 0.30]]))
        net[0].bias.copy_(torch.tensor([0.35, 0.35]))
        net[2].weight.copy_(torch.tensor([[0.40, 0.45]]))
        net[2].bias.copy_(torch.tensor([0.60]))
    return net


def torch_reference(model: nn.Module, x, y, loss: str):
    """Loss, parameter grads and every layer output, from autograd on a float64 copy."""
    net = copy.deepcopy(model).double()
    x = torch.as_tensor(x, dtype=torch.float64).reshape(1, -1)
    outputs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append(o.detach()[0])) for m in net.modules()
             if isinstance(m, (nn.Linear, nn.Sigmoid, nn.Tanh, nn.ReLU))]
    out = net(x)
    for h in hooks:
        h.remove()
    if loss == "mse":
        value = 0.5 * ((out[0] - torch.as_tensor(y, dtype=torch.float64).reshape(-1)) ** 2).sum()
    elif out.shape[1] == 1:
        value = F.binary_cross_entropy_with_logits(out[:, 0], torch.tensor([float(y)], dtype=torch.float64))
    else:
        value = F.cross_entropy(out, torch.tensor([y]))
    value.backward()
    return value.item(), [p.grad.reshape(-1).tolist() for p in net.parameters()], outputs


def flat_grads(trace: Trace) -> list[float]:
    return [p.grad for p in trace.params]


def check_against_torch(model, x, y, loss, lr=0.5):
    trace = backprop_trace(model, x, y, loss=loss, lr=lr)
    value, grads, outputs = torch_reference(model, x, y, loss)
    assert trace.loss == pytest.approx(value, rel=1e-12, abs=1e-14)
    expected = [g for tensor in grads for g in tensor]
    assert flat_grads(trace) == pytest.approx(expected, rel=1e-10, abs=1e-14)
    # every layer's forward values: the z nodes of each Linear, the a nodes of each activation
    computed = []
    for node in trace.nodes:
        if node.op == "add":
            computed.append(node.value)
        elif node.op in ("sigmoid", "tanh", "relu"):
            computed.append(node.value)
    assert computed == pytest.approx([v for o in outputs for v in o.tolist()], rel=1e-12, abs=1e-14)
    # the update is one plain SGD step
    net = copy.deepcopy(model).double()
    flat_values = [v for p in net.parameters() for v in p.detach().reshape(-1).tolist()]
    assert [p.value for p in trace.params] == pytest.approx(flat_values, rel=1e-15)
    assert [p.new_value for p in trace.params] == pytest.approx(
        [v - lr * g for v, g in zip(flat_values, expected)], rel=1e-12, abs=1e-14
    )
    return trace


def test_lecture_network_with_euclidean_loss():
    model = lecture_net()
    trace = check_against_torch(model, [0.05, 0.10], [0.01], "mse")
    ids = [n.id for n in trace.nodes]
    # 2 inputs + hidden (4 w, 4 w*x, 2 b, 2 z, 2 a) + output (2 w, 2 w*x, 1 b, 1 z, 1 a) + loss
    assert len(ids) == 24 == count_nodes(2, [(2, 2, "sigmoid", True), (2, 1, "sigmoid", True)])
    assert len(set(ids)) == len(ids) and ids[0] == "x0" and ids[-1] == "loss"
    assert [p.name for p in trace.params][:3] == ["0.weight[0, 0]", "0.weight[0, 1]", "0.weight[1, 0]"]
    assert trace.loss_kind == "mse" and trace.loss == pytest.approx(0.5 * (0.75136507 - 0.01) ** 2, rel=1e-6)


def test_nodes_are_topologically_ordered_and_grads_obey_the_chain_rule():
    trace = backprop_trace(lecture_net(), [0.05, 0.10], [0.01])
    by_id = {n.id: n for n in trace.nodes}
    position = {n.id: i for i, n in enumerate(trace.nodes)}
    for node in trace.nodes:
        assert all(position[src] < position[node.id] for src in node.inputs)
        assert set(node.local_grads) == set(node.inputs)
        consumers = [c for c in trace.nodes if node.id in c.inputs]
        if consumers:
            assert node.grad == pytest.approx(sum(c.grad * c.local_grads[node.id] for c in consumers), rel=1e-12)
    assert by_id["loss"].grad == 1.0
    # local derivatives of the node types
    wx = by_id["0.wx[1,0]"]
    assert wx.op == "mul" and wx.local_grads == {"0.w[1,0]": by_id["x0"].value, "x0": by_id["0.w[1,0]"].value}
    a = by_id["2.a[0]"]
    assert a.local_grads["2.z[0]"] == pytest.approx(a.value * (1 - a.value))
    assert by_id["loss"].local_grads["2.a[0]"] == pytest.approx(a.value - 0.01)


@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU, nn.Sigmoid, nn.Identity])
def test_cross_entropy_over_three_classes(act):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 3), act(), nn.Linear(3, 3))
    check_against_torch(model, [0.5, -1.2, 2.0], 2, "cross_entropy")


def test_binary_cross_entropy_with_one_logit():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    trace = check_against_torch(model, [1.0, -0.5], 1, "cross_entropy")
    assert trace.loss_kind == "bce_with_logits"
    check_against_torch(model, [1.0, -0.5], 0, "cross_entropy")


def test_mse_with_two_outputs_and_no_bias():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 2), nn.Tanh())
    check_against_torch(model, torch.tensor([[0.3, 0.9]]), torch.tensor([0.5, -0.5]), "mse")


def test_mse_with_a_class_index_uses_its_one_hot_target():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 3))
    by_index = backprop_trace(model, [0.4, -0.3], torch.tensor(2), loss="mse")
    by_vector = check_against_torch(model, [0.4, -0.3], [0.0, 0.0, 1.0], "mse")
    assert by_index.loss == by_vector.loss and flat_grads(by_index) == flat_grads(by_vector)
    # one output: the number is the target value itself
    one = nn.Sequential(nn.Linear(2, 1))
    assert backprop_trace(one, [1.0, 2.0], 1, loss="mse").loss == backprop_trace(one, [1.0, 2.0], [1.0], loss="mse").loss
    with pytest.raises(ValueError, match="out of range"):
        backprop_trace(model, [0.4, -0.3], 3, loss="mse")


def test_graph_model_layers_and_standalone_activation_layers():
    from server.builder import build_model

    spec = {"layers": [
        {"kind": "linear", "name": "hidden", "out_features": 2},
        {"kind": "activation", "name": "act", "activation": "tanh"},
        {"kind": "linear", "name": "out", "out_features": 1, "activation": "sigmoid"},
    ]}
    model, _ = build_model(spec, (2,), None, seed=0)
    assert [(n, a) for n, _, a in mlp_layers(model)] == [("hidden", "identity"), ("act", "tanh"), ("out", "sigmoid")]
    x = torch.tensor([[0.2, -0.4]])  # float32: the trace reads exactly these values
    trace = backprop_trace(model, x, [1.0], loss="mse", lr=0.1)
    net = copy.deepcopy(model).double()
    out = net(x.double())
    loss = 0.5 * ((out - 1.0) ** 2).sum()
    loss.backward()
    assert trace.loss == pytest.approx(loss.item(), rel=1e-12)
    assert flat_grads(trace) == pytest.approx([g for p in net.parameters() for g in p.grad.reshape(-1).tolist()], rel=1e-10)
    assert [p.name for p in trace.params][-1] == "out.bias[0]"
    assert any(n.id == "act.a[1]" and n.op == "tanh" for n in trace.nodes)


def test_toy_graph_model():
    model = mlp([2, 2, 2], act=nn.ReLU, seed=2)
    trace = backprop_trace(model, [0.7, 0.1], 1, loss="cross_entropy")
    net = copy.deepcopy(model).double()
    loss = F.cross_entropy(net(torch.tensor([[0.7, 0.1]], dtype=torch.float64)), torch.tensor([1]))
    loss.backward()
    assert trace.loss == pytest.approx(loss.item(), rel=1e-12)
    assert flat_grads(trace) == pytest.approx([g for p in net.parameters() for g in p.grad.reshape(-1).tolist()], rel=1e-10)


def test_rejects_networks_too_big_to_show():
    with pytest.raises(ValueError, match=rf"unrolls into \d+ scalar nodes; .* at most {MAX_NODES}"):
        backprop_trace(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), [0.0] * 4, [0.0, 0.0])


def test_rejects_what_is_not_a_plain_mlp():
    with pytest.raises(ValueError, match="supports identity, sigmoid, tanh, relu"):
        backprop_trace(nn.Sequential(nn.Linear(2, 2), nn.GELU(), nn.Linear(2, 1)), [0, 0], [0])
    with pytest.raises(ValueError, match="Conv2d"):
        backprop_trace(nn.Sequential(nn.Conv2d(1, 1, 1)), [0.0], [0.0])
    with pytest.raises(ValueError, match="expects 3 inputs but receives 2"):
        backprop_trace(nn.Sequential(nn.Linear(3, 1)), [0.0, 1.0], [0.0])
    with pytest.raises(ValueError, match="target has 1 values but the network has 2 outputs"):
        backprop_trace(nn.Sequential(nn.Linear(2, 2)), [0.0, 1.0], [0.0])
    with pytest.raises(ValueError, match="loss must be"):
        backprop_trace(nn.Sequential(nn.Linear(2, 1)), [0.0, 1.0], [0.0], loss="hinge")


def test_rejects_a_conv_layer_of_a_built_network():
    from server.builder import build_model

    model, _ = build_model(
        {"layers": [{"kind": "conv2d", "name": "c", "out_channels": 1, "kernel_size": 1},
                    {"kind": "linear", "name": "out", "out_features": 1}]}, (1, 1, 1), None, seed=0)
    with pytest.raises(ValueError, match="layer 'c' is a conv2d layer"):
        backprop_trace(model, [0.5], [0.0])


def test_sigmoid_is_stable_for_large_inputs():
    net = nn.Sequential(nn.Linear(1, 1), nn.Sigmoid())
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.fill_(0.0)
    for x in (-800.0, 800.0):
        trace = backprop_trace(net, [x], [0.5])
        assert all(math.isfinite(n.value) and math.isfinite(n.grad) for n in trace.nodes)
