"""Backpropagation, one scalar at a time, on a tiny MLP (the lecture's 2-2-1 network).

The network is unrolled into a graph of scalar nodes: inputs x_i, weights
w_ji, biases b_j, products w_ji * x_i, sums z_j = sum_i w_ji x_i + b_j,
activations a_j = f(z_j), and the loss. The forward pass computes each node's
value; the backward pass visits the nodes in reverse topological order and
applies the chain rule, dL/d(input) += dL/d(node) * d(node)/d(input), with
every local derivative kept so the page can show each multiplication.

Everything is computed by hand with Python floats (double precision), not by
autograd: the point is to show the arithmetic. The tests check it against
torch autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
from torch import Tensor, nn

MAX_NODES = 60  # scalar nodes, loss included: a 2-3-2 network (42 nodes) fits, a graph bigger than this is unreadable on screen

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu")

_ACT_MODULES: dict[type, str] = {nn.Identity: "identity", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU: "relu"}


@dataclass
class Node:
    """One scalar of the computation.

    id: unique key, e.g. "hidden.w[1,0]". label: short display name ("w[1,0]").
    op: "input", "weight", "bias", "mul", "add", "sigmoid", "tanh", "relu",
        or the loss: "mse", "cross_entropy", "bce_with_logits".
    value: its forward value. grad: dL/d(node), what flows back into it.
    inputs: ids of the nodes it is computed from (empty for inputs and parameters).
    local_grads: input id -> d(node)/d(input), the local derivative at this point.
    """

    id: str
    label: str
    op: str
    value: float
    grad: float = 0.0
    local_grads: dict[str, float] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)


@dataclass
class ParamUpdate:
    """One gradient-descent step on one scalar parameter: new_value = value - lr * grad.

    id: the parameter's node id. name: the PyTorch name and index, e.g. "hidden.weight[1, 0]".
    """

    id: str
    name: str
    value: float
    grad: float
    new_value: float


@dataclass
class Trace:
    """The unrolled graph in topological order (inputs and parameters first, the loss last)."""

    nodes: list[Node]
    params: list[ParamUpdate]
    loss: float
    loss_kind: str
    lr: float


def mlp_layers(model: nn.Module) -> list[tuple[str, nn.Linear | None, str]]:
    """The MLP as steps (name, Linear or None, activation name), or ValueError naming what is not one.

    A step with a Linear is an affine layer followed by its activation; a step
    with None is a standalone elementwise activation layer. Accepts a
    GraphModel whose blocks are "linear" or "activation" layers chained one
    after the other, or an ``nn.Sequential`` of Linear and activation modules
    (Identity, Sigmoid, Tanh, ReLU).
    """
    steps: list[tuple[str, nn.Linear | None, str]] = []
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, nn.ModuleDict):
        previous = "input"
        wiring = getattr(model, "inputs", None) or {}
        for name, block in blocks.items():
            kind = getattr(block, "kind", type(block).__name__)
            core = getattr(block, "core", None)
            if kind == "linear" and isinstance(core, nn.Linear):
                steps.append((name, core, _act_name(name, block.act)))
            elif kind == "activation":
                steps.append((name, None, _act_name(name, block.act)))
            else:
                raise ValueError(
                    f"layer {name!r} is a {kind} layer; the backprop trace only unrolls networks made of linear "
                    f"layers and elementwise activations ({', '.join(ACTIVATIONS)})"
                )
            if list(wiring.get(name, [previous])) != [previous]:
                raise ValueError(f"layer {name!r} does not take its input from {previous!r}; the trace needs a plain chain")
            previous = name
    elif isinstance(model, nn.Sequential):
        for name, mod in model.named_children():
            if isinstance(mod, nn.Linear):
                steps.append((name, mod, "identity"))
                continue
            act = _act_name(name, mod)
            last = steps[-1] if steps else None
            if last is not None and last[1] is not None and last[2] == "identity":
                steps[-1] = (last[0], last[1], act)  # the activation of the Linear just before
            else:
                steps.append((name, None, act))
    else:
        raise ValueError(f"{type(model).__name__} is neither a GraphModel nor an nn.Sequential MLP")
    if not any(lin is not None for _, lin, _ in steps):
        raise ValueError("the network has no linear layer")
    return steps


def _act_name(layer: str, act: nn.Module) -> str:
    name = _ACT_MODULES.get(type(act))
    if name is None:
        raise ValueError(
            f"layer {layer!r} uses {type(act).__name__}; the backprop trace supports {', '.join(ACTIVATIONS)}"
        )
    return name


def count_nodes(in_features: int, steps: Sequence[tuple[int, int, str, bool]]) -> int:
    """Scalar nodes of the unrolled graph, loss included.

    ``steps``: (inputs, outputs, activation, affine) per step; a standalone
    activation step has inputs == outputs and affine False.
    """
    total = in_features + 1
    for n_in, n_out, act, affine in steps:
        if affine:
            total += 2 * n_in * n_out + 2 * n_out
        total += 0 if act == "identity" else n_out
    return total


def backprop_trace(
    model: nn.Module,
    x: Tensor | Sequence[float],
    y: Tensor | Sequence[float] | float | int,
    loss: Literal["mse", "cross_entropy"] = "mse",
    lr: float = 0.1,
) -> Trace:
    """Forward values, backward gradients and one SGD step, scalar by scalar.

    Args:
        model: a tiny MLP (see ``mlp_layers``) of at most MAX_NODES scalar nodes.
        x: one example, (1, F) or (F,).
        y: for "mse" the target vector (O,) of the O outputs (a number when O = 1),
            or a class index, which stands for its one-hot vector when O > 1 (the
            project's MSE convention); for "cross_entropy" the class index (with
            one output, 0 or 1: binary cross-entropy with logits, the project's
            two-class convention).
        loss: "mse" is the Euclidean loss L = 1/2 sum_k (a_k - y_k)^2;
            "cross_entropy" is -log softmax(a)_y over the last layer's values.
        lr: step size of the update shown in ``Trace.params``.

    Returns:
        Trace with nodes in topological order, the parameter updates in the
        order of ``model.parameters()`` (weights row by row, then biases), and the loss.
    """
    steps = mlp_layers(model)
    xs = _floats(x)
    if isinstance(x, Tensor) and not (x.dim() == 1 or (x.dim() == 2 and x.shape[0] == 1)):
        raise ValueError(f"expected one example (1, F) or (F,), got {tuple(x.shape)}")
    if loss not in ("mse", "cross_entropy"):
        raise ValueError(f"loss must be 'mse' or 'cross_entropy', got {loss!r}")
    width, shapes = len(xs), []
    for name, lin, act in steps:
        if lin is not None and lin.in_features != width:
            raise ValueError(f"layer {name!r} expects {lin.in_features} inputs but receives {width}")
        out = width if lin is None else lin.out_features
        shapes.append((width, out, act, lin is not None))
        width = out
    n = count_nodes(len(xs), shapes)
    if n > MAX_NODES:
        raise ValueError(
            f"this network unrolls into {n} scalar nodes; the backprop trace shows at most {MAX_NODES}. "
            "Use a tiny network (e.g. 2 inputs, 2 hidden units, 1 output) to follow every multiplication"
        )

    graph = _Graph()
    current = [graph.add(f"x{i}", f"x{i}", "input", v) for i, v in enumerate(xs)]
    params: list[tuple[str, str]] = []  # (node id, PyTorch name), in model.parameters() order
    for name, lin, act in steps:
        if lin is not None:
            current, step_params = _affine(graph, name, lin, current)
            params += step_params
        if act != "identity":
            activated = []
            for j, zid in enumerate(current):
                value, slope = _activate(act, graph.value(zid))
                activated.append(graph.add(f"{name}.a[{j}]", f"a[{j}]", act, value, {zid: slope}))
            current = activated

    value, local, kind = _loss(loss, [graph.value(o) for o in current], y)
    graph.add("loss", "L", kind, value, dict(zip(current, local)))
    graph.backward("loss")
    updates = [
        ParamUpdate(id=pid, name=pname, value=graph.value(pid), grad=graph.grad(pid),
                    new_value=graph.value(pid) - lr * graph.grad(pid))
        for pid, pname in params
    ]
    return Trace(nodes=graph.nodes, params=updates, loss=value, loss_kind=kind, lr=lr)


def _affine(graph: "_Graph", name: str, lin: nn.Linear, current: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Add the nodes of z_j = sum_i w_ji x_i + b_j; return the z ids and the (node id, name) of the parameters."""
    w = lin.weight.detach().double().cpu().tolist()
    b = lin.bias.detach().double().cpu().tolist() if lin.bias is not None else None
    zs, weight_ids, bias_ids = [], [], []
    for j in range(lin.out_features):
        terms = []
        for i, src in enumerate(current):
            wid = graph.add(f"{name}.w[{j},{i}]", f"w[{j},{i}]", "weight", w[j][i])
            weight_ids.append((wid, f"{name}.weight[{j}, {i}]"))
            pid = f"{name}.wx[{j},{i}]"
            graph.add(pid, f"w[{j},{i}]·{graph.label(src)}", "mul", w[j][i] * graph.value(src),
                      {wid: graph.value(src), src: w[j][i]})
            terms.append(pid)
        if b is not None:
            bid = graph.add(f"{name}.b[{j}]", f"b[{j}]", "bias", b[j])
            bias_ids.append((bid, f"{name}.bias[{j}]"))
            terms.append(bid)
        zid = f"{name}.z[{j}]"
        graph.add(zid, f"z[{j}]", "add", math.fsum(graph.value(t) for t in terms), {t: 1.0 for t in terms})
        zs.append(zid)
    return zs, weight_ids + bias_ids


def _class_index(y) -> int | None:
    """``y`` as a class index when it is one integer (a Python int or a one-element integer tensor/array), else None."""
    if isinstance(y, bool):
        return None
    if isinstance(y, (int, np.integer)):
        return int(y)
    if isinstance(y, Tensor) and y.numel() == 1 and not y.is_floating_point():
        return int(y.item())
    if isinstance(y, np.ndarray) and y.size == 1 and np.issubdtype(y.dtype, np.integer):
        return int(y.item())
    return None


def _floats(values) -> list[float]:
    """A tensor, array, sequence or number as a flat list of Python floats."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().double().numpy()
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def _activate(act: str, z: float) -> tuple[float, float]:
    """(f(z), f'(z)); ReLU'(0) is taken as 0, as PyTorch does."""
    if act == "sigmoid":
        s = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
        return s, s * (1.0 - s)
    if act == "tanh":
        t = math.tanh(z)
        return t, 1.0 - t * t
    if act == "relu":
        return (z, 1.0) if z > 0 else (0.0, 0.0)
    return z, 1.0


def _loss(kind: str, out: list[float], y) -> tuple[float, list[float], str]:
    """(L, dL/d out_k, op name) for the network outputs ``out``."""
    if kind == "mse":
        target = _floats(y)
        label = _class_index(y)
        if len(out) > 1 and label is not None:  # a class index: the project's MSE target is its one-hot vector
            if not 0 <= label < len(out):
                raise ValueError(f"label {label} is out of range for {len(out)} outputs")
            target = [1.0 if k == label else 0.0 for k in range(len(out))]
        if len(target) != len(out):
            raise ValueError(f"the MSE target has {len(target)} values but the network has {len(out)} outputs")
        diffs = [a - t for a, t in zip(out, target)]
        return 0.5 * math.fsum(d * d for d in diffs), diffs, "mse"
    label = int(y.item()) if isinstance(y, Tensor) else int(y)
    if len(out) == 1:  # one logit s: BCE with logits, L = softplus(s) - y s, dL/ds = sigmoid(s) - y
        if label not in (0, 1):
            raise ValueError(f"a one-output network has classes 0 and 1, got label {label}")
        s = out[0]
        softplus = max(s, 0.0) + math.log1p(math.exp(-abs(s)))
        sig = 1.0 / (1.0 + math.exp(-s)) if s >= 0 else math.exp(s) / (1.0 + math.exp(s))
        return softplus - label * s, [sig - label], "bce_with_logits"
    if not 0 <= label < len(out):
        raise ValueError(f"label {label} is out of range for {len(out)} outputs")
    top = max(out)
    exps = [math.exp(v - top) for v in out]
    total = math.fsum(exps)
    probs = [e / total for e in exps]
    loss = -(out[label] - top - math.log(total))
    return loss, [p - (1.0 if k == label else 0.0) for k, p in enumerate(probs)], "cross_entropy"


class _Graph:
    """Nodes in insertion (= topological) order, with reverse-mode accumulation."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._by_id: dict[str, Node] = {}

    def add(self, nid: str, label: str, op: str, value: float, local: dict[str, float] | None = None) -> str:
        local = dict(local or {})
        node = Node(id=nid, label=label, op=op, value=float(value), local_grads=local, inputs=list(local))
        self.nodes.append(node)
        self._by_id[nid] = node
        return nid

    def value(self, nid: str) -> float:
        return self._by_id[nid].value

    def label(self, nid: str) -> str:
        return self._by_id[nid].label

    def grad(self, nid: str) -> float:
        return self._by_id[nid].grad

    def backward(self, root: str) -> None:
        """dL/d(node) for every node: the chain rule in reverse topological order."""
        for node in self.nodes:
            node.grad = 0.0
        self._by_id[root].grad = 1.0
        for node in reversed(self.nodes):
            for src, local in node.local_grads.items():
                self._by_id[src].grad += node.grad * local
