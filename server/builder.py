"""NetworkSpec + input shape -> a checked ``GraphModel`` and its ``NetworkSummary``.

Two steps, in this order:

1. :func:`infer_shapes` checks the document and computes every layer's output
   shape, parameter count, multiply-adds, receptive field and activation memory
   by arithmetic alone. It allocates no tensors, so a 10-billion-parameter spec
   is refused in microseconds, and every mistake a user can make comes back as
   one :class:`NetworkError` naming the layer, the problem (with its numbers)
   and the fix.
2. :func:`build_model` constructs the modules (``layers.py``) for a spec that
   passed step 1 and applies each layer's initializers (``initializers.py``).

Conventions of the summary (shapes never include the batch axis):

* ``macs`` counts the multiply-adds of the weighted maps only: linear
  ``in * out``, conv ``out_h * out_w * out_c * (in_c / groups) * kh * kw``,
  maxout ``pieces *`` linear, and the FCs/conv inside squeeze-excite and
  spatial attention. Norms, pools, activations, add, concat and gating count 0:
  they are a rounding error next to the weighted maps. (This is what
  ``torch.utils.flop_counter`` counts, halved.)
* ``receptive_field`` is the side, in input pixels, of the input window one
  output pixel sees: ``rf += (k - 1) * dilation * jump; jump *= stride`` through
  convs and pools, the max over the inputs of add/concat; spatial attention's
  k x k conv grows it like a conv. Squeeze-excite leaves it unchanged (its gate
  sees the whole image; counting that would make every later field "everything"
  and hide the local growth the lecture is about). For a non-square kernel or
  stride the larger side is reported. Flat outputs have ``None``.
* ``activation_bytes`` is ``4 * prod(output_shape)`` (float32, per example).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from server import schemas
from server.initializers import LSUVResult, compute_fans, init_tensor_, lsuv_rescale_, needs_matrix
from server.layers import (
    Add,
    BlockDict,
    Concat,
    GlobalAvgPool,
    LayerBlock,
    Maxout,
    MaxoutActivation,
    Sign,
    SpatialAttention,
    SqueezeExcite,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_ACTIVATION_BYTES",
    "DEFAULT_MAX_PARAMS",
    "INPUT",
    "GraphModel",
    "LayerBlock",
    "LayerInfo",
    "NetworkError",
    "NetworkSummary",
    "apply_data_dependent_init",
    "build_model",
    "infer_shapes",
    "make_activation",
]

DEFAULT_MAX_PARAMS = 50_000_000  # parameters: 200 MB of float32 weights, and as much again per Adam moment
DEFAULT_MAX_ACTIVATION_BYTES = 2 * 1024**3  # bytes of layer outputs for one batch of DEFAULT_BATCH_SIZE examples
DEFAULT_BATCH_SIZE = 256  # examples: the batch the activation limit is checked for (the largest batch presets use)
MAX_UNITS = 1_000_000  # out_features / out_channels: wider than this is a typo, not a design
MAX_WINDOW = 1024  # pixels, per axis, for kernel_size, stride, dilation and padding

INPUT = "input"  # the name layers use for the data; no layer may take it


# ---------------------------------------------------------------------------
# Errors and the summary
# ---------------------------------------------------------------------------


class NetworkError(ValueError):
    """A mistake in the network document: ``str(e) == "layer 'conv2': <problem>. Fix: <fix>"``.

    Attributes:
        layer: the offending layer's name, or None for whole-network problems
            (then the message starts with ``network:``).
        problem: what is wrong, with the numbers involved.
        fix: what would fix it.
    """

    def __init__(self, layer: str | None, problem: str, fix: str) -> None:
        self.layer = layer
        self.problem = problem
        self.fix = fix
        where = "network" if layer is None else f"layer '{layer}'"
        super().__init__(f"{where}: {problem}. Fix: {fix}")

    def __reduce__(self):
        # ValueError pickles as cls(message); rebuild from the three parts instead,
        # so the error survives a trip through a worker process.
        return (type(self), (self.layer, self.problem, self.fix))

    def to_dict(self) -> dict[str, str | None]:
        """``{layer, problem, fix, message}``, the shape ``POST /api/validate`` lists errors in."""
        return {"layer": self.layer, "problem": self.problem, "fix": self.fix, "message": str(self)}


@dataclass
class LayerInfo:
    """What :func:`infer_shapes` knows about one layer (no batch axis anywhere)."""

    name: str
    kind: str
    inputs: list[str]  # resolved: the default (previous layer, or "input") filled in
    output_shape: tuple[int, ...]  # after the layer's activation
    params: int  # == sum(p.numel() for p in block.parameters())
    trainable: bool  # params > 0
    macs: int  # multiply-adds per example (see the module docstring)
    receptive_field: int | None  # side in input pixels; None for flat outputs
    jump: int | None  # input pixels per output pixel (product of strides); None for flat outputs
    activation_bytes: int  # 4 * prod(output_shape)


@dataclass
class NetworkSummary:
    """Per-layer shapes and costs of a network, and their totals."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    layers: list[LayerInfo]
    total_params: int
    total_macs: int
    activation_bytes: int  # per example, summed over all layers' outputs

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (tuples become lists)."""
        return _jsonable(asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


# ---------------------------------------------------------------------------
# Formatting for messages
# ---------------------------------------------------------------------------


def _num(n: int) -> str:
    return f"{n:,}"


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) if len(shape) == 3 else f"{shape[0]} features"


def _pair_str(pair: tuple[int, int]) -> str:
    return f"{pair[0]}x{pair[1]}"


def _scalar_or_pair(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else str(pair)


def _names(names: Sequence[str], limit: int = 8) -> str:
    quoted = [f"'{n}'" for n in names[-limit:]]
    if len(names) > limit:
        quoted.insert(0, "...")
    return ", ".join(quoted)


def _divisors(n: int, limit: int = 6) -> str:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    divs = sorted({*small, *(n // d for d in small)})
    shown = divs if len(divs) <= limit else divs[: limit - 1] + [divs[-1]]
    return ", ".join(map(str, shown))


# ---------------------------------------------------------------------------
# Shape inference: pure arithmetic over _Feature records
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Feature:
    """A tensor flowing between layers, without its values: who made it, its shape and where it looks."""

    source: str
    shape: tuple[int, ...]
    rf: tuple[int, int] | None = None  # receptive field (rows, cols), images only
    jump: tuple[int, int] | None = None  # input pixels per pixel (rows, cols), images only

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _window(spec, field: str, lo: int) -> tuple[int, int]:
    """``spec.<field>`` as a (rows, cols) pair, checked to lie in [lo, MAX_WINDOW]."""
    pair = _pair(getattr(spec, field))
    for v in pair:
        if v < lo:
            raise NetworkError(
                spec.name,
                f"{field} must be at least {lo} but is {v}",
                f"set {field} to {lo} or more" + (" (1 means no skipping)" if field == "stride" else ""),
            )
        if v > MAX_WINDOW:
            raise NetworkError(
                spec.name,
                f"{field} {v} is absurdly large (the limit is {MAX_WINDOW} pixels)",
                f"use a {field} of a few pixels",
            )
    return pair


def _units(spec, field: str) -> int:
    """``spec.<field>`` (out_features / out_channels), checked to lie in [1, MAX_UNITS]."""
    n = getattr(spec, field)
    if n < 1:
        raise NetworkError(
            spec.name, f"{field} must be at least 1 but is {n}", f"set {field} to the number of units you want, e.g. 64"
        )
    if n > MAX_UNITS:
        raise NetworkError(
            spec.name,
            f"{field} {_num(n)} is absurdly large (the limit is {_num(MAX_UNITS)} per layer)",
            f"use at most {_num(MAX_UNITS)}; teaching networks use tens to thousands",
        )
    return n


def _image(spec, x: _Feature) -> tuple[int, int, int]:
    """The (C, H, W) of an image input, or the error for a layer that needs one."""
    if not x.is_image:
        raise NetworkError(
            spec.name,
            f"{spec.kind} needs an image input (channels x height x width) but '{x.source}' gives "
            f"a flat vector of {x.shape[0]} features",
            f"put the {spec.kind} layer before the layer that flattens the image "
            "(flatten, global_avg_pool or linear), or use an image dataset",
        )
    c, h, w = x.shape
    return c, h, w


def _check_window_fits(spec, x: _Feature, kernel, dilation, padding, noun: str) -> tuple[int, int]:
    """The span of a (dilated) window, after checking it fits the padded input; ``noun``: kernel or window."""
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    _, h, w = x.shape
    if h + 2 * padding[0] < span[0] or w + 2 * padding[1] < span[1]:
        what = f"the {_pair_str(kernel)} {noun}"
        if dilation != (1, 1):
            what += f" with dilation {_scalar_or_pair(dilation)} (spanning {_pair_str(span)})"
        need = (max(1, span[0] - 2 * padding[0]), max(1, span[1] - 2 * padding[1]))
        raise NetworkError(
            spec.name,
            f"input is {_shape(x.shape)} but {what} needs at least {_pair_str(need)} "
            f"(with padding {_scalar_or_pair(padding)})",
            f"use a {noun} of at most {h + 2 * padding[0]}x{w + 2 * padding[1]} here, add padding, "
            "or downsample less before this layer",
        )
    return span


def _slide(x: _Feature, kernel, stride, dilation, out_hw, channels: int) -> _Feature:
    """The feature after a sliding window: new shape, receptive field and jump."""
    rf = tuple(r + (k - 1) * d * j for r, k, d, j in zip(x.rf, kernel, dilation, x.jump))
    jump = tuple(j * s for j, s in zip(x.jump, stride))
    return _Feature("", (channels, *out_hw), rf, jump)


def _same_shape(x: _Feature) -> _Feature:
    return _Feature("", x.shape, x.rf, x.jump)


def _flat(n: int) -> _Feature:
    return _Feature("", (n,))


# Each _infer_<kind>(spec, xs) returns (core output, params, macs); xs holds the
# layer's inputs, already checked for count. The activation is handled after.


def _infer_linear(spec: schemas.LinearLayer, xs):
    in_f = math.prod(xs[0].shape)
    out_f = _units(spec, "out_features")
    return _flat(out_f), in_f * out_f + (out_f if spec.bias else 0), in_f * out_f


def _infer_maxout(spec: schemas.MaxoutLayer, xs):
    in_f = math.prod(xs[0].shape)
    out_f = _units(spec, "out_features")
    return _flat(out_f), spec.pieces * (in_f * out_f + out_f), spec.pieces * in_f * out_f


def _infer_conv2d(spec: schemas.Conv2dLayer, xs):
    x = xs[0]
    c, h, w = _image(spec, x)
    out_c = _units(spec, "out_channels")
    kernel = _window(spec, "kernel_size", 1)
    stride = _window(spec, "stride", 1)
    dilation = _window(spec, "dilation", 1)
    g = spec.groups
    if g < 1:
        raise NetworkError(
            spec.name, f"groups must be at least 1 but is {g}", "set groups to 1 (an ordinary convolution)"
        )
    if c % g:
        raise NetworkError(
            spec.name,
            f"groups={g} must divide the {c} input channels (from '{x.source}')",
            f"use a divisor of {c} ({_divisors(c)}); groups equal to the input channels make a depthwise conv",
        )
    if out_c % g:
        raise NetworkError(
            spec.name,
            f"groups={g} must divide out_channels={out_c}",
            f"make out_channels a multiple of {g}, e.g. {g * max(1, round(out_c / g))}",
        )
    if spec.padding == "same":
        if stride != (1, 1):
            raise NetworkError(
                spec.name,
                f"padding 'same' keeps the size, which needs stride 1, but stride is {_scalar_or_pair(stride)}",
                f"use a number for padding (e.g. {(kernel[0] - 1) // 2}) with this stride, or stride 1",
            )
        out_hw = (h, w)
    else:
        padding = _window(spec, "padding", 0)
        span = _check_window_fits(spec, x, kernel, dilation, padding, "kernel")
        out_hw = tuple((n + 2 * p - sp) // st + 1 for n, p, sp, st in zip((h, w), padding, span, stride))
    per_output = (c // g) * kernel[0] * kernel[1]
    params = out_c * per_output + (out_c if spec.bias else 0)
    return _slide(x, kernel, stride, dilation, out_hw, out_c), params, out_hw[0] * out_hw[1] * out_c * per_output


def _infer_pool(spec: schemas.MaxPool2dLayer | schemas.AvgPool2dLayer, xs):
    x = xs[0]
    c, h, w = _image(spec, x)
    kernel = _window(spec, "kernel_size", 1)
    stride = kernel if spec.stride is None else _window(spec, "stride", 1)
    padding = _window(spec, "padding", 0)
    if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        raise NetworkError(
            spec.name,
            f"padding {_scalar_or_pair(padding)} is more than half the {_pair_str(kernel)} pooling window",
            f"use padding of at most {_scalar_or_pair((kernel[0] // 2, kernel[1] // 2))}",
        )
    _check_window_fits(spec, x, kernel, (1, 1), padding, "window")
    out_hw = tuple((n + 2 * p - k) // s + 1 for n, p, k, s in zip((h, w), padding, kernel, stride))
    return _slide(x, kernel, stride, (1, 1), out_hw, c), 0, 0


def _infer_global_avg_pool(spec, xs):
    c, _, _ = _image(spec, xs[0])
    return _flat(c), 0, 0


def _infer_flatten(spec, xs):
    return _flat(math.prod(xs[0].shape)), 0, 0


def _infer_batch_norm(spec, xs):
    return _same_shape(xs[0]), 2 * xs[0].shape[0], 0


def _infer_layer_norm(spec, xs):
    return _same_shape(xs[0]), 2 * math.prod(xs[0].shape), 0


def _infer_group_norm(spec: schemas.GroupNormLayer, xs):
    c, g = xs[0].shape[0], spec.num_groups
    if g < 1:
        raise NetworkError(
            spec.name, f"num_groups must be at least 1 but is {g}", f"use a divisor of {c} ({_divisors(c)})"
        )
    if c % g:
        raise NetworkError(
            spec.name,
            f"num_groups={g} must divide the {c} channels of '{xs[0].source}'",
            f"use a divisor of {c} ({_divisors(c)})",
        )
    return _same_shape(xs[0]), 2 * c, 0


def _infer_instance_norm(spec: schemas.InstanceNormLayer, xs):
    c, _, _ = _image(spec, xs[0])
    return _same_shape(xs[0]), 2 * c if spec.affine else 0, 0


def _infer_passthrough(spec, xs):
    return _same_shape(xs[0]), 0, 0


def _merged_field(xs) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    if not all(x.is_image for x in xs):
        return None, None
    return (
        tuple(max(x.rf[i] for x in xs) for i in range(2)),
        tuple(max(x.jump[i] for x in xs) for i in range(2)),
    )


def _infer_add(spec, xs):
    first = xs[0]
    for x in xs[1:]:
        if x.shape != first.shape:
            raise NetworkError(
                spec.name,
                f"add needs inputs of one shape but '{first.source}' gives {_shape(first.shape)} "
                f"and '{x.source}' gives {_shape(x.shape)}",
                "make the branches agree: a 1x1 conv2d (or a linear layer) on the shortcut can change "
                "the channels, and the same stride or pooling on both branches the size",
            )
    rf, jump = _merged_field(xs)
    return _Feature("", first.shape, rf, jump), 0, 0


def _infer_concat(spec, xs):
    first = xs[0]
    for x in xs[1:]:
        if x.is_image != first.is_image or x.shape[1:] != first.shape[1:]:
            both_images = first.is_image and x.is_image
            raise NetworkError(
                spec.name,
                "concat joins along the channel axis, so its inputs must have the same "
                + ("height and width" if both_images else "kind (image or flat vector)")
                + f", but '{first.source}' gives {_shape(first.shape)} and '{x.source}' gives {_shape(x.shape)}",
                "give the branches the same spatial size (the same strides and pooling, 'same' padding)"
                if both_images
                else "flatten (or global_avg_pool) the image branch before concatenating",
            )
    rf, jump = _merged_field(xs)
    return _Feature("", (sum(x.shape[0] for x in xs), *first.shape[1:]), rf, jump), 0, 0


def _infer_squeeze_excite(spec: schemas.SqueezeExciteLayer, xs):
    c, _, _ = _image(spec, xs[0])
    hidden = max(1, c // spec.reduction)
    return _same_shape(xs[0]), 2 * c * hidden + hidden + c, 2 * c * hidden


def _infer_spatial_attention(spec: schemas.SpatialAttentionLayer, xs):
    x = xs[0]
    c, h, w = _image(spec, x)
    k = spec.kernel_size
    if k % 2 == 0:
        raise NetworkError(
            spec.name,
            f"kernel_size {k} is even, so the mask conv (padding {k // 2}) would be one pixel larger than the "
            f"{h}x{w} input",
            f"use an odd kernel_size such as {k - 1} or {k + 1}",
        )
    out = _slide(x, (k, k), (1, 1), (1, 1), (h, w), c)
    return out, 2 * k * k + 1, h * w * 2 * k * k


# layer spec class -> (shape rule, takes many inputs)
_INFER = {
    schemas.LinearLayer: (_infer_linear, False),
    schemas.Conv2dLayer: (_infer_conv2d, False),
    schemas.MaxPool2dLayer: (_infer_pool, False),
    schemas.AvgPool2dLayer: (_infer_pool, False),
    schemas.GlobalAvgPoolLayer: (_infer_global_avg_pool, False),
    schemas.FlattenLayer: (_infer_flatten, False),
    schemas.BatchNormLayer: (_infer_batch_norm, False),
    schemas.LayerNormLayer: (_infer_layer_norm, False),
    schemas.GroupNormLayer: (_infer_group_norm, False),
    schemas.InstanceNormLayer: (_infer_instance_norm, False),
    schemas.DropoutLayer: (_infer_passthrough, False),
    schemas.ActivationLayer: (_infer_passthrough, False),
    schemas.AddLayer: (_infer_add, True),
    schemas.ConcatLayer: (_infer_concat, True),
    schemas.SqueezeExciteLayer: (_infer_squeeze_excite, False),
    schemas.SpatialAttentionLayer: (_infer_spatial_attention, False),
    schemas.MaxoutLayer: (_infer_maxout, False),
}


def _infer_activation(spec, act, x: _Feature) -> tuple[_Feature, int]:
    """The feature after ``act`` (an activation spec or None) and the activation's parameter count."""
    n = x.shape[0]  # channels of an image, features of a vector: the axis activations act on
    unit = "channels" if x.is_image else "features"
    if isinstance(act, schemas.PReLUAct):
        return x, n if act.per_channel else 1
    if isinstance(act, schemas.MaxoutAct):
        k = act.pieces
        if n % k:
            raise NetworkError(
                spec.name,
                f"maxout with {k} pieces needs a count of {unit} divisible by {k} but gets {n} {unit}",
                f"make the number of {unit} a multiple of {k}, e.g. {k * max(1, -(-n // k))}",
            )
        return _Feature(x.source, (n // k, *x.shape[1:]), x.rf, x.jump), 0
    return x, 0


def _check_inits(spec) -> None:
    if getattr(spec, "bias", True) and needs_matrix(getattr(spec, "bias_init", None)):
        raise NetworkError(
            spec.name,
            f"bias_init {spec.bias_init.kind} needs a matrix, but a bias is a vector",
            "use zeros, constant or a fan-based init (he_normal, xavier_uniform, ...) for bias_init",
        )


def _as_network_spec(spec: schemas.NetworkSpec | dict) -> schemas.NetworkSpec:
    return spec if isinstance(spec, schemas.NetworkSpec) else schemas.NetworkSpec.model_validate(spec)


def _check_input_shape(input_shape) -> tuple[int, ...]:
    try:
        shape = tuple(operator.index(n) for n in input_shape)  # ints, numpy ints and torch.Size alike
    except TypeError:
        shape = tuple(input_shape)
    if len(shape) not in (1, 3) or not all(isinstance(n, int) and n >= 1 for n in shape):
        raise NetworkError(
            None,
            f"the input shape {shape} is neither (features,) nor (channels, height, width) with positive sizes",
            "give the data's shape without the batch axis, e.g. (2,) or (1, 28, 28)",
        )
    return shape


def _raw_inputs(layers) -> dict[str, list[str]]:
    """name -> inputs as written, the default (previous layer) filled in; first spelling of a name wins."""
    raw: dict[str, list[str]] = {}
    previous = INPUT
    for layer in layers:
        raw.setdefault(layer.name, list(layer.inputs) if layer.inputs is not None else [previous])
        previous = layer.name
    return raw


def _cycle_path(start: str, target: str, raw: dict[str, list[str]]) -> list[str] | None:
    """A chain start -> ... -> target following inputs backwards, if one exists."""
    stack, seen = [[start]], {start}
    while stack:
        path = stack.pop()
        for ref in raw.get(path[-1], []):
            if ref == target:
                return path + [ref]
            if ref not in seen:
                seen.add(ref)
                stack.append(path + [ref])
    return None


def _resolve_graph(layers) -> list[list[str]]:
    """Check names and wiring; return each layer's input names in document order."""
    all_names = {layer.name for layer in layers}
    raw = _raw_inputs(layers)
    seen: dict[str, int] = {}
    resolved: list[list[str]] = []
    for i, layer in enumerate(layers):
        name = layer.name
        if name == INPUT:
            raise NetworkError(
                name, f"'{INPUT}' is reserved for the network's data", f"rename the layer, e.g. to '{INPUT}_layer'"
            )
        if name in seen:
            raise NetworkError(
                name,
                f"the name is already used by layer {seen[name] + 1} ({layers[seen[name]].kind}); names must be unique",
                f"rename this layer, e.g. to '{name}_{i + 1}'",
            )
        inputs = raw[name]  # a unique name by now, so its raw entry is its own
        if not inputs:
            raise NetworkError(
                name,
                "inputs is an empty list",
                f"list the layers that feed it (or '{INPUT}'), or drop inputs to use the previous layer",
            )
        for ref in inputs:
            if ref == name:
                raise NetworkError(
                    name,
                    "it lists itself as an input, which makes a cycle",
                    f"feed it from an earlier layer or '{INPUT}'",
                )
            if ref == INPUT or ref in seen:
                continue
            if ref in all_names:
                path = _cycle_path(ref, name, raw)
                what = "a forward reference"
                if path:
                    what = f"a cycle: '{name}' reads '{ref}'" + "".join(f", which reads '{p}'" for p in path[1:])
                raise NetworkError(
                    name,
                    f"input '{ref}' comes later in the document, which makes {what}; "
                    f"a layer may only use earlier layers or '{INPUT}'",
                    f"break the cycle: feed '{name}' from an earlier layer or '{INPUT}'"
                    if path
                    else f"move '{ref}' above '{name}', or feed '{name}' from an earlier layer",
                )
            earlier = [INPUT, *seen]
            raise NetworkError(
                name, f"input '{ref}' does not exist", f"use one of the earlier layers: {_names(earlier)}"
            )
        _, many = _INFER[type(layer)]
        if many and len(inputs) < 2:
            others = [n for n in [INPUT, *seen] if n != inputs[0]]
            example = f", e.g. ['{inputs[0]}', '{others[-1]}']" if others else ""
            raise NetworkError(
                name,
                f"{layer.kind} needs at least 2 inputs but has {len(inputs)} ({_names(inputs)})",
                f"list two or more layers in inputs{example}",
            )
        if not many and len(inputs) != 1:
            raise NetworkError(
                name,
                f"{layer.kind} takes one input but lists {len(inputs)} ({_names(inputs)})",
                "merge them first with an add or concat layer and feed that layer in",
            )
        seen[name] = i
        resolved.append(inputs)

    used = {ref for inputs in resolved for ref in inputs}
    for layer in layers[:-1]:
        if layer.name not in used:
            raise NetworkError(
                layer.name,
                f"its output is never used (no later layer lists it, and only the last layer, "
                f"'{layers[-1].name}', is the network's output)",
                "connect it to a later layer or delete it",
            )
    return resolved


def _check_outputs(last, out: _Feature, num_classes: int) -> None:
    if out.is_image:
        raise NetworkError(
            last.name,
            f"the network ends with a {_shape(out.shape)} image, but a classifier must end with "
            f"{num_classes} outputs",
            f"add a global_avg_pool (or flatten) layer and then a linear layer with out_features={num_classes}",
        )
    n = out.shape[0]
    if n == num_classes or (n == 1 and num_classes == 2):
        return
    also = " (or 1, for two classes)" if num_classes == 2 else ""
    if isinstance(last, (schemas.LinearLayer, schemas.MaxoutLayer)) and not isinstance(
        getattr(last, "activation", None), schemas.MaxoutAct
    ):
        fix = f"set out_features of '{last.name}' to {num_classes}{also}"
    else:
        fix = f"end the network with a linear layer with out_features={num_classes}{also}"
    raise NetworkError(last.name, f"the network ends with {n} outputs but the data has {num_classes} classes", fix)


def infer_shapes(
    spec: schemas.NetworkSpec | dict,
    input_shape: Sequence[int],
    num_classes: int | None = None,
    *,
    max_params: int | None = DEFAULT_MAX_PARAMS,
    max_activation_bytes: int | None = DEFAULT_MAX_ACTIVATION_BYTES,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> NetworkSummary:
    """Check a network and compute its shapes and costs by arithmetic alone (no tensors).

    Args:
        spec: the network (a ``NetworkSpec`` or its JSON dict).
        input_shape: one example's shape, ``(F,)`` or ``(C, H, W)``.
        num_classes: when given, the output must be ``(num_classes,)``, or ``(1,)``
            for two classes; None skips that check (shape previews of unfinished networks).
        max_params: refuse networks with more parameters (None: no limit).
        max_activation_bytes: refuse networks whose layer outputs for a batch of
            ``batch_size`` take more float32 bytes than this (None: no limit).
        batch_size: examples per batch for the activation limit.

    Returns:
        The summary: per-layer ``LayerInfo`` and totals.

    Raises:
        NetworkError: the first problem found, in document order: names and wiring
            first, then each layer's shapes and sizes, then the output and the limits.
    """
    spec = _as_network_spec(spec)
    shape = _check_input_shape(input_shape)
    layers = spec.layers
    resolved = _resolve_graph(layers)

    image = len(shape) == 3
    features = {INPUT: _Feature(INPUT, shape, (1, 1) if image else None, (1, 1) if image else None)}
    infos: list[LayerInfo] = []
    total_params = total_macs = total_bytes = 0
    for layer, inputs in zip(layers, resolved):
        _check_inits(layer)
        rule, _ = _INFER[type(layer)]
        core, params, macs = rule(layer, [features[name] for name in inputs])
        out, act_params = _infer_activation(layer, getattr(layer, "activation", None), core)
        out = _Feature(layer.name, out.shape, out.rf, out.jump)
        params += act_params
        total_params += params
        if max_params is not None and total_params > max_params:
            raise NetworkError(
                layer.name,
                f"this layer has {_num(params)} parameters, which brings the network to {_num(total_params)}, "
                f"over the limit of {_num(max_params)} parameters",
                "use fewer units or channels here, or shrink its input (pooling or a stride before a linear layer)",
            )
        nbytes = 4 * math.prod(out.shape)
        total_macs += macs
        total_bytes += nbytes
        features[layer.name] = out
        infos.append(
            LayerInfo(
                name=layer.name,
                kind=layer.kind,
                inputs=list(inputs),
                output_shape=out.shape,
                params=params,
                trainable=params > 0,
                macs=macs,
                receptive_field=max(out.rf) if out.rf else None,
                jump=max(out.jump) if out.jump else None,
                activation_bytes=nbytes,
            )
        )

    out = features[layers[-1].name]
    if num_classes is not None:
        _check_outputs(layers[-1], out, num_classes)
    if max_activation_bytes is not None and total_bytes * batch_size > max_activation_bytes:
        largest = max(infos, key=lambda info: info.activation_bytes)
        raise NetworkError(
            None,
            f"the layer outputs take {_bytes(total_bytes)} per example, {_bytes(total_bytes * batch_size)} for a "
            f"batch of {batch_size}, over the limit of {_bytes(max_activation_bytes)} (the largest is "
            f"'{largest.name}' with {_bytes(largest.activation_bytes)} per example)",
            "use fewer channels, or downsample earlier with a stride or pooling",
        )
    return NetworkSummary(
        input_shape=shape,
        output_shape=out.shape,
        layers=infos,
        total_params=total_params,
        total_macs=total_macs,
        activation_bytes=total_bytes,
    )


# ---------------------------------------------------------------------------
# Construction
# ---------------------------------------------------------------------------


def make_activation(spec, features: int) -> nn.Module:
    """An activation spec (or None) -> its module; ``features`` is the size of axis 1 it acts on (for PReLU)."""
    match spec:
        case None | schemas.IdentityAct():
            return nn.Identity()
        case schemas.SigmoidAct():
            return nn.Sigmoid()
        case schemas.TanhAct():
            return nn.Tanh()
        case schemas.ReLUAct():
            return nn.ReLU()
        case schemas.LeakyReLUAct(negative_slope=slope):
            return nn.LeakyReLU(slope)
        case schemas.PReLUAct(init=init, per_channel=per_channel):
            return nn.PReLU(num_parameters=features if per_channel else 1, init=init)
        case schemas.ELUAct(alpha=alpha):
            return nn.ELU(alpha)
        case schemas.GELUAct():
            return nn.GELU()
        case schemas.SiLUAct():
            return nn.SiLU()
        case schemas.SoftplusAct(beta=beta):
            return nn.Softplus(beta)
        case schemas.MaxoutAct(pieces=pieces):
            return MaxoutActivation(pieces)
        case schemas.SignAct():
            return Sign()
    raise TypeError(f"unknown activation spec {spec!r}")


def _make_core(spec, in_shapes: list[tuple[int, ...]]) -> nn.Module:
    """A checked layer spec and its input shapes -> the module holding its weights."""
    shape = in_shapes[0]
    match spec:
        case schemas.LinearLayer():
            return nn.Linear(math.prod(shape), spec.out_features, bias=spec.bias)
        case schemas.MaxoutLayer():
            return Maxout(math.prod(shape), spec.out_features, spec.pieces)
        case schemas.Conv2dLayer():
            return nn.Conv2d(
                shape[0], spec.out_channels, _pair(spec.kernel_size), stride=_pair(spec.stride),
                padding=spec.padding if spec.padding == "same" else _pair(spec.padding),
                dilation=_pair(spec.dilation), groups=spec.groups, bias=spec.bias,
            )
        case schemas.MaxPool2dLayer() | schemas.AvgPool2dLayer():
            pool = nn.MaxPool2d if isinstance(spec, schemas.MaxPool2dLayer) else nn.AvgPool2d
            stride = None if spec.stride is None else _pair(spec.stride)
            return pool(_pair(spec.kernel_size), stride=stride, padding=_pair(spec.padding))
        case schemas.GlobalAvgPoolLayer():
            return GlobalAvgPool()
        case schemas.FlattenLayer():
            return nn.Flatten()
        case schemas.BatchNormLayer():
            norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            return norm(shape[0], eps=spec.eps, momentum=spec.momentum)
        case schemas.LayerNormLayer():
            return nn.LayerNorm(shape, eps=spec.eps)
        case schemas.GroupNormLayer():
            return nn.GroupNorm(spec.num_groups, shape[0], eps=spec.eps)
        case schemas.InstanceNormLayer():
            return nn.InstanceNorm2d(shape[0], eps=spec.eps, affine=spec.affine)
        case schemas.DropoutLayer():
            # On a flat vector every feature is its own "channel", so spatial dropout is plain dropout.
            return nn.Dropout2d(spec.p) if spec.spatial and len(shape) == 3 else nn.Dropout(spec.p)
        case schemas.ActivationLayer():
            return nn.Identity()
        case schemas.AddLayer():
            return Add()
        case schemas.ConcatLayer():
            return Concat()
        case schemas.SqueezeExciteLayer():
            return SqueezeExcite(shape[0], spec.reduction)
        case schemas.SpatialAttentionLayer():
            return SpatialAttention(spec.kernel_size)
    raise TypeError(f"unknown layer spec {spec!r}")


def _make_block(spec, in_shapes: list[tuple[int, ...]], info: LayerInfo) -> LayerBlock:
    core = _make_core(spec, in_shapes)
    # The activation acts on the core's output; only maxout changes its size, and
    # PReLU (the only one that needs the size) cannot be combined with it.
    act = make_activation(getattr(spec, "activation", None), info.output_shape[0])
    flatten = isinstance(spec, (schemas.LinearLayer, schemas.MaxoutLayer)) and len(in_shapes[0]) > 1
    block = LayerBlock(spec, core, act, flatten_input=flatten)
    if hasattr(spec, "weight_init"):
        for weight, bias, groups in block.init_targets():
            fan_in, fan_out = compute_fans(weight.shape, groups)
            init_tensor_(weight, spec.weight_init, fan_in=fan_in, fan_out=fan_out)
            if bias is not None:
                init_tensor_(bias, spec.bias_init, fan_in=fan_in, fan_out=fan_out)
    return block


class GraphModel(nn.Module):
    """The network of a ``NetworkSpec``: layer blocks run in document order.

    Attributes:
        blocks: layer name -> ``LayerBlock``, in document (a topological) order.
            A ``BlockDict``: names with ``.`` work as keys.
        inputs: layer name -> its input names (``"input"`` is the data).
        input_shape: one example's shape, e.g. ``(1, 28, 28)``.
        output_name: the last layer, whose output is the network's.

    ``forward``: ``(N, *input_shape) -> (N, *output_shape)``, ``(N, num_outputs)``
    for a classifier.
    """

    def __init__(self, spec: schemas.NetworkSpec, summary: NetworkSummary) -> None:
        super().__init__()
        shapes = {INPUT: summary.input_shape} | {info.name: info.output_shape for info in summary.layers}
        self.input_shape = summary.input_shape
        self.blocks = BlockDict()
        self.inputs: dict[str, list[str]] = {}
        for layer, info in zip(spec.layers, summary.layers):
            block = _make_block(layer, [shapes[name] for name in info.inputs], info)
            built = sum(p.numel() for p in block.parameters())
            if built != info.params:  # infer_shapes and the modules disagree: a bug here, not the user's
                raise RuntimeError(f"layer '{info.name}': inferred {info.params} parameters, built {built}")
            self.blocks[info.name] = block
            self.inputs[info.name] = list(info.inputs)
        self.output_name = summary.layers[-1].name
        # Drop each intermediate after its last reader, so inference holds only
        # the live frontier (autograd keeps what backward needs regardless).
        last_reader: dict[str, str] = {}
        for name, inputs in self.inputs.items():
            for ref in inputs:
                last_reader[ref] = name
        self._release: dict[str, list[str]] = {name: [] for name in self.inputs}
        for ref, reader in last_reader.items():
            self._release[reader].append(ref)

    @staticmethod
    def layer_of(qualified_name: str) -> str | None:
        """The layer a ``named_parameters()``/``named_modules()``/``state_dict()`` name belongs to.

        ``"blocks.conv1.core.weight" -> "conv1"``; it undoes ``BlockDict``'s escape, so
        ``"blocks.block1\u2024conv.core.weight" -> "block1.conv"``. None outside ``blocks``.
        """
        parts = qualified_name.split(".")
        return BlockDict.name(parts[1]) if len(parts) > 1 and parts[0] == "blocks" else None

    def forward(self, x: Tensor) -> Tensor:
        values = {INPUT: x}
        for name, block in self.blocks.items():
            values[name] = block(*[values[ref] for ref in self.inputs[name]])
            for ref in self._release[name]:
                del values[ref]
        return values[self.output_name]


def build_model(
    spec: schemas.NetworkSpec | dict,
    input_shape: Sequence[int],
    num_classes: int | None = None,
    *,
    max_params: int | None = DEFAULT_MAX_PARAMS,
    max_activation_bytes: int | None = DEFAULT_MAX_ACTIVATION_BYTES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int | None = None,
) -> tuple[GraphModel, NetworkSummary]:
    """Check a network (:func:`infer_shapes`, which allocates nothing), then build and initialize it.

    Args:
        spec, input_shape, num_classes, max_params, max_activation_bytes, batch_size:
            as for :func:`infer_shapes`.
        seed: when given, all random initialization draws from ``torch.manual_seed(seed)``
            inside ``torch.random.fork_rng``, so the same seed gives the same weights and
            the caller's global RNG stream is left untouched. None uses the global RNG.

    Returns:
        ``(model, summary)``; the model is on the CPU in training mode. LSUV layers
        are orthogonal until :func:`apply_data_dependent_init` runs on a batch.

    Raises:
        NetworkError: see :func:`infer_shapes`.
    """
    spec = _as_network_spec(spec)
    summary = infer_shapes(
        spec, input_shape, num_classes,
        max_params=max_params, max_activation_bytes=max_activation_bytes, batch_size=batch_size,
    )
    if seed is None:
        return GraphModel(spec, summary), summary
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GraphModel(spec, summary), summary


class _StopForward(Exception):
    """Raised by the LSUV hook once it has the layer's output: the rest of the forward is wasted work."""


def apply_data_dependent_init(model: GraphModel, x: Tensor) -> dict[str, LSUVResult]:
    """Run LSUV on a batch: rescale each ``lsuv`` layer's weight until its core output has the target variance.

    Layers go in document order, so each is measured on the already-normalized
    output of those before it. The core output is the pre-activation (the affine
    map's output for linear/conv/maxout). Runs under ``torch.no_grad`` with the
    model in eval mode (dropout off, batch-norm running statistics neither used
    from the batch nor updated); each module's training flag is restored after.

    Args:
        model: a ``GraphModel`` from :func:`build_model`.
        x: a batch ``(N, *input_shape)`` on the model's device; N of a few hundred
            gives a stable variance.

    Returns:
        layer name -> ``LSUVResult`` (final variance, rescales, converged) for each LSUV layer.
    """
    targets = [
        (name, block) for name, block in model.blocks.items()
        if isinstance(getattr(block.spec, "weight_init", None), schemas.LSUVInit)
    ]
    results: dict[str, LSUVResult] = {}
    if not targets:
        return results
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            for name, block in targets:

                def measure(core: nn.Module = block.core) -> float:
                    captured: list[Tensor] = []

                    def hook(module, args, output):
                        captured.append(output)
                        raise _StopForward

                    handle = core.register_forward_hook(hook)
                    try:
                        model(x)
                    except _StopForward:
                        pass
                    finally:
                        handle.remove()
                    return captured[0].double().var().item()

                weights = [weight for weight, _, _ in block.init_targets()]
                results[name] = lsuv_rescale_(weights, measure, block.spec.weight_init)
    finally:
        for module, training in modes.items():
            module.training = training
    return results
