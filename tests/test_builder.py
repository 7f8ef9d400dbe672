"""builder.py: validation messages, shape/param/MAC/receptive-field inference against real forwards."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from server import registry, schemas
from server.builder import (
    GraphModel,
    LayerBlock,
    NetworkError,
    NetworkSummary,
    build_model,
    infer_shapes,
)


def L(kind: str, name: str, **fields) -> dict:
    return {"kind": kind, "name": name, **fields}


def net(*layers: dict) -> dict:
    return {"layers": list(layers)}




# ---------------------------------------------------------------------------
# Invalid networks: each its own mistake, its own message, the right layer
# ---------------------------------------------------------------------------

IMG = (1, 8, 8)
FLAT = (10,)

INVALID = [
    # id, input shape, layers, extra kwargs, culprit layer, message fragment
    ("duplicate_name", FLAT, [L("linear", "h", out_features=8), L("linear", "h", out_features=2)], {},
     "h", "already used by layer 1 (linear)"),
    ("reserved_name", FLAT, [L("linear", "input", out_features=2)], {}, "input", "'input' is reserved"),
    ("forward_reference", FLAT,
     [L("linear", "a", out_features=4, inputs=["b"]), L("linear", "b", out_features=2, inputs=["input"])], {},
     "a", "input 'b' comes later in the document, which makes a forward reference"),
    ("cycle", FLAT, [L("linear", "a", out_features=4, inputs=["b"]), L("linear", "b", out_features=2)], {},
     "a", "makes a cycle: 'a' reads 'b', which reads 'a'"),
    ("self_reference", FLAT, [L("linear", "a", out_features=2, inputs=["a"])], {}, "a", "lists itself as an input"),
    ("unknown_input", FLAT, [L("linear", "a", out_features=4), L("linear", "b", out_features=2, inputs=["nope"])], {},
     "b", "input 'nope' does not exist"),
    ("empty_inputs", FLAT, [L("linear", "a", out_features=2, inputs=[])], {}, "a", "inputs is an empty list"),
    ("unused_layer", FLAT,
     [L("linear", "dead", out_features=4), L("linear", "out", out_features=2, inputs=["input"])], {},
     "dead", "its output is never used"),
    ("add_one_input", IMG, [L("conv2d", "c", out_channels=2, padding=1), L("add", "sum")], {},
     "sum", "add needs at least 2 inputs but has 1"),
    ("concat_one_input", FLAT, [L("concat", "cat", inputs=["input"])], {}, "cat", "concat needs at least 2 inputs"),
    ("add_shape_mismatch", IMG,
     [L("conv2d", "a", out_channels=8, padding=1), L("conv2d", "b", out_channels=16, padding=1),
      L("add", "sum", inputs=["a", "b"])], {},
     "sum", "'a' gives 8x8x8 and 'b' gives 16x8x8"),
    ("concat_spatial_mismatch", IMG, [L("conv2d", "a", out_channels=4), L("concat", "cat", inputs=["input", "a"])], {},
     "cat", "same height and width, but 'input' gives 1x8x8 and 'a' gives 4x6x6"),
    ("concat_image_and_flat", IMG,
     [L("flatten", "f"), L("concat", "cat", inputs=["input", "f"])], {}, "cat", "same kind (image or flat vector)"),
    ("two_inputs_to_linear", FLAT,
     [L("linear", "a", out_features=4), L("linear", "b", out_features=2, inputs=["a", "input"])], {},
     "b", "linear takes one input but lists 2 ('a', 'input')"),
    ("conv_on_flat", FLAT, [L("conv2d", "c", out_channels=4)], {},
     "c", "conv2d needs an image input (channels x height x width) but 'input' gives a flat vector of 10 features"),
    ("kernel_too_big", (1, 5, 5), [L("conv2d", "conv2", out_channels=4, kernel_size=7)], {},
     "conv2", "input is 1x5x5 but the 7x7 kernel needs at least 7x7 (with padding 0)"),
    ("dilated_kernel_too_big", (1, 5, 5), [L("conv2d", "c", out_channels=4, kernel_size=3, dilation=3)], {},
     "c", "the 3x3 kernel with dilation 3 (spanning 7x7) needs at least 7x7"),
    ("pool_window_too_big", (1, 3, 3), [L("max_pool2d", "p", kernel_size=4)], {},
     "p", "input is 1x3x3 but the 4x4 window needs at least 4x4 (with padding 0)"),
    ("groups_not_dividing_in", (3, 8, 8), [L("conv2d", "dw", out_channels=4, groups=2)], {},
     "dw", "groups=2 must divide the 3 input channels"),
    ("groups_not_dividing_out", (4, 8, 8), [L("conv2d", "dw", out_channels=6, groups=4)], {},
     "dw", "groups=4 must divide out_channels=6"),
    ("groups_zero", IMG, [L("conv2d", "c", out_channels=4, groups=0)], {}, "c", "groups must be at least 1 but is 0"),
    ("group_norm_groups", IMG, [L("conv2d", "c", out_channels=6), L("group_norm", "gn", num_groups=4)], {},
     "gn", "num_groups=4 must divide the 6 channels of 'c'"),
    ("maxout_activation_indivisible", FLAT,
     [L("linear", "h", out_features=10, activation={"kind": "maxout", "pieces": 3})], {},
     "h", "maxout with 3 pieces needs a count of features divisible by 3 but gets 10 features"),
    ("zero_out_features", FLAT, [L("linear", "h", out_features=0)], {}, "h", "out_features must be at least 1 but is 0"),
    ("negative_out_channels", IMG, [L("conv2d", "c", out_channels=-3)], {}, "c", "out_channels must be at least 1 but is -3"),
    ("zero_kernel", IMG, [L("conv2d", "c", out_channels=2, kernel_size=0)], {}, "c", "kernel_size must be at least 1 but is 0"),
    ("zero_stride", IMG, [L("conv2d", "c", out_channels=2, stride=0)], {}, "c", "stride must be at least 1 but is 0"),
    ("zero_dilation", IMG, [L("conv2d", "c", out_channels=2, dilation=[1, 0])], {}, "c", "dilation must be at least 1 but is 0"),
    ("negative_padding", IMG, [L("conv2d", "c", out_channels=2, padding=-1)], {}, "c", "padding must be at least 0 but is -1"),
    ("absurd_out_features", FLAT, [L("linear", "h", out_features=10**9)], {},
     "h", "out_features 1,000,000,000 is absurdly large"),
    ("absurd_kernel", IMG, [L("conv2d", "c", out_channels=2, kernel_size=5000)], {},
     "c", "kernel_size 5000 is absurdly large"),
    ("same_padding_with_stride", IMG, [L("conv2d", "c", out_channels=2, padding="same", stride=2)], {},
     "c", "padding 'same' keeps the size, which needs stride 1, but stride is 2"),
    ("pool_padding_over_half", IMG, [L("max_pool2d", "p", kernel_size=2, padding=2)], {},
     "p", "padding 2 is more than half the 2x2 pooling window"),
    ("pool_on_flat", FLAT, [L("avg_pool2d", "p")], {}, "p", "avg_pool2d needs an image input"),
    ("global_pool_on_flat", FLAT, [L("global_avg_pool", "g")], {}, "g", "global_avg_pool needs an image input"),
    ("instance_norm_on_flat", FLAT, [L("instance_norm", "n")], {}, "n", "instance_norm needs an image input"),
    ("squeeze_excite_on_flat", FLAT, [L("squeeze_excite", "se")], {}, "se", "squeeze_excite needs an image input"),
    ("spatial_attention_on_flat", FLAT, [L("spatial_attention", "sa")], {}, "sa", "spatial_attention needs an image input"),
    ("spatial_attention_even_kernel", IMG, [L("spatial_attention", "sa", kernel_size=4)], {},
     "sa", "kernel_size 4 is even"),
    ("orthogonal_bias", FLAT, [L("linear", "h", out_features=2, bias_init="orthogonal")], {},
     "h", "bias_init orthogonal needs a matrix, but a bias is a vector"),
    ("over_max_params", (1000,), [L("linear", "big", out_features=1000), L("linear", "out", out_features=2)],
     {"max_params": 100_000}, "big", "1,001,000 parameters, which brings the network to 1,001,000, over the limit of 100,000"),
    ("over_activation_memory", (3, 512, 512), [L("conv2d", "wide", out_channels=64, padding=1)], {},
     None, "64.0 MiB per example, 16.0 GiB for a batch of 256, over the limit of 2.0 GiB"),
    ("wrong_output_count", FLAT, [L("linear", "out", out_features=5)], {"num_classes": 3},
     "out", "the network ends with 5 outputs but the data has 3 classes"),
    ("ends_with_image", IMG, [L("conv2d", "c", out_channels=4)], {"num_classes": 10},
     "c", "the network ends with a 4x6x6 image, but a classifier must end with 10 outputs"),
    ("bad_input_shape", (3, 28), [L("linear", "h", out_features=2)], {},
     None, "the input shape (3, 28) is neither (features,) nor (channels, height, width)"),
]


@pytest.mark.parametrize(
    "input_shape, layers, kwargs, culprit, fragment",
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_network_is_refused_with_a_specific_message(input_shape, layers, kwargs, culprit, fragment):
    with pytest.raises(NetworkError) as info:
        infer_shapes(net(*layers), input_shape, **kwargs)
    err = info.value
    assert fragment in err.problem, str(err)
    assert err.layer == culprit
    assert err.fix
    where = "network" if culprit is None else f"layer '{culprit}'"
    assert str(err) == f"{where}: {err.problem}. Fix: {err.fix}"


def test_invalid_cases_are_distinct():
    assert len(INVALID) >= 22
    assert len({case[0] for case in INVALID}) == len(INVALID)
    assert len({case[-1] for case in INVALID}) == len(INVALID)


def test_build_model_refuses_what_infer_shapes_refuses():
    with pytest.raises(NetworkError, match="kernel needs at least 7x7"):
        build_model(net(L("conv2d", "conv2", out_channels=4, kernel_size=7)), (1, 5, 5))


def test_network_error_is_a_value_error_that_pickles_and_serializes():
    err = NetworkError("conv2", "something is wrong", "do this")
    assert isinstance(err, ValueError)
    again = pickle.loads(pickle.dumps(err))
    assert (again.layer, again.problem, again.fix, str(again)) == (err.layer, err.problem, err.fix, str(err))
    assert err.to_dict() == {
        "layer": "conv2", "problem": "something is wrong", "fix": "do this",
        "message": "layer 'conv2': something is wrong. Fix: do this",
    }


def test_ten_billion_parameters_are_refused_without_allocating():
    # 100,000 x 100,000 weights would be 40 GB: only arithmetic may run.
    spec = net(L("linear", "huge", out_features=100_000), L("linear", "out", out_features=2))
    for call in (infer_shapes, build_model):
        with pytest.raises(NetworkError) as info:
            call(spec, (100_000,))
        assert "parameters" in str(info.value)
        assert "10,000,100,000" in str(info.value)
        assert info.value.layer == "huge"


def test_activation_limit_scales_with_batch_size():
    spec = net(L("conv2d", "wide", out_channels=64, padding=1))
    infer_shapes(spec, (3, 512, 512), batch_size=16)  # 1 GiB: fits
    with pytest.raises(NetworkError, match="for a batch of 64"):
        infer_shapes(spec, (3, 512, 512), batch_size=64)
    infer_shapes(spec, (3, 512, 512), max_activation_bytes=None)


# ---------------------------------------------------------------------------
# Shapes, params and MACs against a real forward pass
# ---------------------------------------------------------------------------


def check_against_torch(spec, input_shape, num_classes=None, batch=3) -> tuple[GraphModel, NetworkSummary]:
    """Build, run a batch, and compare every inferred number torch can check."""
    model, summary = build_model(spec, input_shape, num_classes, seed=0)
    model.eval()
    seen: dict[str, tuple[int, ...]] = {}
    handles = [
        block.register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, tuple(out.shape)))
        for name, block in model.blocks.items()
    ]
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = model(torch.randn(batch, *input_shape))
    for handle in handles:
        handle.remove()

    assert tuple(out.shape) == (batch, *summary.output_shape)
    assert list(model.blocks.keys()) == [info.name for info in summary.layers]
    for info in summary.layers:
        block = model.blocks[info.name]
        assert isinstance(block, LayerBlock)
        assert seen[info.name] == (batch, *info.output_shape), info.name
        assert info.params == sum(p.numel() for p in block.parameters()), info.name
        assert info.trainable == (info.params > 0)
        assert info.activation_bytes == 4 * torch.Size(info.output_shape).numel()
        assert model.inputs[info.name] == info.inputs
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    # FlopCounterMode counts 2 flops per multiply-add of matmuls and convs: our MAC convention.
    assert counter.get_total_flops() == 2 * batch * summary.total_macs
    assert summary.total_macs == sum(info.macs for info in summary.layers)
    assert summary.activation_bytes == sum(info.activation_bytes for info in summary.layers)
    json.dumps(summary.to_dict())
    return model, summary


SINGLE_LAYERS = [
    # id, input shape, layer fields (name "x")
    ("linear", FLAT, dict(kind="linear", out_features=3)),
    ("linear_no_bias_on_image", (2, 4, 4), dict(kind="linear", out_features=3, bias=False)),
    ("conv2d_stride_pad", (3, 9, 9), dict(kind="conv2d", out_channels=4, kernel_size=3, stride=2, padding=1)),
    ("conv2d_same", (3, 7, 7), dict(kind="conv2d", out_channels=4, kernel_size=4, padding="same")),
    ("conv2d_dilated", (2, 11, 11), dict(kind="conv2d", out_channels=4, kernel_size=3, dilation=2)),
    ("conv2d_grouped", (4, 6, 6), dict(kind="conv2d", out_channels=8, kernel_size=3, groups=2, bias=False)),
    ("conv2d_rectangular", (2, 9, 7), dict(kind="conv2d", out_channels=3, kernel_size=[3, 1], stride=[2, 1], padding=[1, 0])),
    ("max_pool2d", (2, 9, 9), dict(kind="max_pool2d", kernel_size=2)),
    ("max_pool2d_padded", (2, 9, 9), dict(kind="max_pool2d", kernel_size=3, stride=2, padding=1)),
    ("avg_pool2d", (2, 8, 7), dict(kind="avg_pool2d", kernel_size=3, stride=1, padding=1)),
    ("global_avg_pool", (5, 4, 3), dict(kind="global_avg_pool")),
    ("flatten_image", (2, 3, 4), dict(kind="flatten")),
    ("flatten_flat", FLAT, dict(kind="flatten")),
    ("batch_norm_flat", FLAT, dict(kind="batch_norm")),
    ("batch_norm_image", (3, 4, 4), dict(kind="batch_norm", momentum=0.2)),
    ("layer_norm_flat", FLAT, dict(kind="layer_norm")),
    ("layer_norm_image", (3, 4, 4), dict(kind="layer_norm")),
    ("group_norm_image", (6, 4, 4), dict(kind="group_norm", num_groups=3)),
    ("group_norm_flat", (6,), dict(kind="group_norm", num_groups=2)),
    ("instance_norm", (3, 4, 4), dict(kind="instance_norm")),
    ("instance_norm_no_affine", (3, 4, 4), dict(kind="instance_norm", affine=False)),
    ("dropout", FLAT, dict(kind="dropout", p=0.3)),
    ("dropout_spatial", (3, 4, 4), dict(kind="dropout", spatial=True)),
    ("dropout_spatial_flat", FLAT, dict(kind="dropout", spatial=True)),
    ("activation", (3, 4, 4), dict(kind="activation", activation="relu")),
    ("squeeze_excite", (8, 5, 5), dict(kind="squeeze_excite", reduction=4)),
    ("squeeze_excite_tiny", (3, 5, 5), dict(kind="squeeze_excite", reduction=8)),
    ("spatial_attention", (4, 6, 6), dict(kind="spatial_attention")),
    ("spatial_attention_k3", (4, 2, 2), dict(kind="spatial_attention", kernel_size=3)),
    ("maxout", FLAT, dict(kind="maxout", out_features=4, pieces=3)),
    ("maxout_on_image", (2, 3, 3), dict(kind="maxout", out_features=4)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch pads a copy: fine here
@pytest.mark.parametrize("input_shape, fields", [c[1:] for c in SINGLE_LAYERS], ids=[c[0] for c in SINGLE_LAYERS])
def test_single_layer_matches_torch(input_shape, fields):
    check_against_torch(net({"name": "x", **fields}), input_shape)


MERGE_NETS = [
    ("add", (2, 5, 5), [L("conv2d", "a", out_channels=2, padding=1), L("add", "x", inputs=["a", "input"])]),
    ("add_three_flat", FLAT, [L("linear", "a", out_features=10), L("add", "x", inputs=["a", "input", "a"])]),
    ("concat_image", (2, 5, 5), [L("conv2d", "a", out_channels=3, padding=1), L("concat", "x", inputs=["input", "a"])]),
    ("concat_flat", FLAT, [L("linear", "a", out_features=4), L("concat", "x", inputs=["a", "input"])]),
]


@pytest.mark.parametrize("input_shape, layers", [c[1:] for c in MERGE_NETS], ids=[c[0] for c in MERGE_NETS])
def test_merge_layers_match_torch(input_shape, layers):
    check_against_torch(net(*layers), input_shape)


def test_every_layer_kind_is_covered():
    covered = {fields["kind"] for _, _, fields in SINGLE_LAYERS} | {"add", "concat"}
    assert covered == set(registry.LAYERS)


ACTIVATIONS = [
    "identity", "sigmoid", "tanh", "relu", {"kind": "leaky_relu", "negative_slope": 0.1},
    {"kind": "prelu", "init": 0.1}, {"kind": "prelu", "per_channel": False}, {"kind": "elu", "alpha": 0.5},
    "gelu", "silu", {"kind": "softplus", "beta": 2.0}, {"kind": "maxout", "pieces": 2},
    {"kind": "maxout", "pieces": 3}, "sign",
]


def _act_id(act) -> str:
    return act if isinstance(act, str) else "-".join(f"{v}" for v in act.values())


@pytest.mark.parametrize("act", ACTIVATIONS, ids=_act_id)
@pytest.mark.parametrize("where", ["linear", "conv2d", "activation_layer"])
def test_every_activation_matches_torch(act, where):
    if where == "linear":
        check_against_torch(net(L("linear", "x", out_features=6, activation=act)), FLAT)
    elif where == "conv2d":
        check_against_torch(net(L("conv2d", "x", out_channels=6, padding=1, activation=act)), (2, 4, 4))
    else:
        check_against_torch(net(L("conv2d", "c", out_channels=6), L("activation", "x", activation=act)), (2, 4, 4))


def test_every_activation_is_covered():
    assert {a if isinstance(a, str) else a["kind"] for a in ACTIVATIONS} == set(registry.ACTIVATIONS)


def test_activation_modules_are_the_documented_ones():
    model, summary = build_model(
        net(
            L("conv2d", "c", out_channels=6, activation={"kind": "prelu", "init": 0.2}),
            L("activation", "m", activation={"kind": "maxout", "pieces": 3}),
            L("flatten", "f"),
            L("linear", "s", out_features=2, activation="sign"),
        ),
        (1, 5, 5),
    )
    prelu = model.blocks["c"].act
    assert isinstance(prelu, nn.PReLU) and prelu.num_parameters == 6 and torch.all(prelu.weight == 0.2)
    assert summary.layers[1].output_shape == (2, 3, 3)
    assert isinstance(model.blocks["m"].core, nn.Identity)
    assert set(model(torch.randn(4, 1, 5, 5)).unique().tolist()) <= {-1.0, 1.0}


def test_linear_flattens_an_image_in_channel_height_width_order():
    model, _ = build_model(net(L("linear", "x", out_features=3)), (2, 3, 4), seed=0)
    x = torch.randn(5, 2, 3, 4)
    linear = model.blocks["x"].core
    assert linear.in_features == 24
    torch.testing.assert_close(model(x), linear(x.reshape(5, -1)))


BLOCK_NETS = {
    "residual": ((4, 8, 8), [
        L("conv2d", "stem", out_channels=8, padding=1, activation="relu"),
        L("conv2d", "r1", out_channels=8, padding=1),
        L("batch_norm", "bn1"),
        L("activation", "relu1", activation="relu"),
        L("conv2d", "r2", out_channels=8, padding=1),
        L("add", "sum", inputs=["r2", "stem"]),
        L("activation", "relu2", activation="relu"),
        L("conv2d", "down", out_channels=16, kernel_size=1, stride=2, inputs=["relu2"]),
        L("conv2d", "r3", out_channels=16, stride=2, padding=1, inputs=["relu2"]),
        L("add", "sum2", inputs=["r3", "down"]),
        L("global_avg_pool", "gap"),
        L("linear", "out", out_features=10),
    ]),
    "dense": ((3, 6, 6), [
        L("conv2d", "c1", out_channels=4, padding=1, activation="relu"),
        L("concat", "d1", inputs=["input", "c1"]),
        L("conv2d", "c2", out_channels=4, padding=1, activation="relu"),
        L("concat", "d2", inputs=["d1", "c2"]),
        L("conv2d", "c3", out_channels=4, padding=1, activation="relu"),
        L("concat", "d3", inputs=["input", "c1", "c2", "c3"]),
        L("avg_pool2d", "pool"),
        L("flatten", "flat"),
        L("linear", "out", out_features=10),
    ]),
    "depthwise_separable": ((8, 10, 10), [
        L("conv2d", "dw", out_channels=8, groups=8, padding=1, bias=False),
        L("batch_norm", "bn"),
        L("activation", "a", activation="relu"),
        L("conv2d", "pw", out_channels=16, kernel_size=1, activation="relu"),
        L("conv2d", "dw2", out_channels=32, groups=16, stride=2, padding=1),
        L("global_avg_pool", "gap"),
        L("linear", "out", out_features=10),
    ]),
    "squeeze_excite": ((3, 8, 8), [
        L("conv2d", "c", out_channels=16, padding=1, activation="relu"),
        L("squeeze_excite", "se", reduction=4),
        L("max_pool2d", "pool"),
        L("group_norm", "gn", num_groups=4),
        L("global_avg_pool", "gap"),
        L("dropout", "drop", p=0.2),
        L("linear", "out", out_features=10),
    ]),
    "attention": ((3, 8, 8), [
        L("conv2d", "c", out_channels=8, padding=1, activation="relu"),
        L("spatial_attention", "sa", kernel_size=7),
        L("layer_norm", "ln"),
        L("flatten", "flat"),
        L("maxout", "mo", out_features=16, pieces=2),
        L("linear", "out", out_features=1),
    ]),
}


@pytest.mark.parametrize("name", list(BLOCK_NETS))
def test_block_networks_match_torch(name):
    input_shape, layers = BLOCK_NETS[name]
    num_classes = 2 if name == "attention" else 10
    check_against_torch(net(*layers), input_shape, num_classes)


def test_squeeze_excite_and_attention_counts():
    _, summary = build_model(net(*BLOCK_NETS["squeeze_excite"][1]), (3, 8, 8))
    se = summary.layers[1]
    # 16 -> 4 -> 16 with biases; MACs of the two FCs.
    assert (se.params, se.macs) == (16 * 4 + 4 + 4 * 16 + 16, 2 * 16 * 4)
    _, summary = build_model(net(*BLOCK_NETS["attention"][1]), (3, 8, 8))
    sa = summary.layers[1]
    assert (sa.params, sa.macs) == (2 * 49 + 1, 8 * 8 * 2 * 49)
    assert summary.layers[4].params == 2 * (8 * 8 * 8 * 16 + 16)  # maxout: twice a linear layer


def test_lecture_example_six_5x5_filters_on_32x32x3():
    spec = net(L("conv2d", "conv1", out_channels=6, kernel_size=5))
    layer = infer_shapes(spec, (3, 32, 32)).layers[0]
    assert layer.output_shape == (6, 28, 28)
    assert layer.params == 6 * (5 * 5 * 3) + 6 == 456
    assert layer.macs == 28 * 28 * 6 * 5 * 5 * 3
    assert (layer.receptive_field, layer.jump) == (5, 1)
    check_against_torch(spec, (3, 32, 32))


# ---------------------------------------------------------------------------
# Receptive field
# ---------------------------------------------------------------------------


def test_receptive_field_of_known_stacks():
    three = infer_shapes(net(*[L("conv2d", f"c{i}", out_channels=2) for i in range(3)]), (1, 16, 16))
    assert [(i.receptive_field, i.jump) for i in three.layers] == [(3, 1), (5, 1), (7, 1)]
    strided = infer_shapes(net(L("conv2d", "a", out_channels=2, stride=2), L("conv2d", "b", out_channels=2)), (1, 16, 16))
    assert [(i.receptive_field, i.jump) for i in strided.layers] == [(3, 2), (7, 2)]
    flat = infer_shapes(net(L("conv2d", "a", out_channels=2), L("flatten", "f"), L("linear", "o", out_features=2)), (1, 8, 8))
    assert [i.receptive_field for i in flat.layers] == [3, None, None]


RF_NETS = {
    "three_3x3": [L("conv2d", f"c{i}", out_channels=2) for i in range(3)],
    "stride_then_conv": [L("conv2d", "a", out_channels=2, stride=2), L("conv2d", "b", out_channels=2)],
    "dilation_pool": [
        L("conv2d", "a", out_channels=2, kernel_size=5, stride=2, padding=2),
        L("avg_pool2d", "p", kernel_size=2),
        L("conv2d", "b", out_channels=2, kernel_size=3, dilation=2, padding=2),
    ],
    "residual_takes_the_max": [
        L("conv2d", "a", out_channels=2, padding=1),
        L("conv2d", "b", out_channels=2, padding=1),
        L("conv2d", "c", out_channels=2, kernel_size=1),
        L("add", "sum", inputs=["c", "a"]),
    ],
    "spatial_attention": [L("conv2d", "a", out_channels=2, stride=2), L("spatial_attention", "sa", kernel_size=5)],
}


@pytest.mark.parametrize("name", list(RF_NETS))
def test_receptive_field_matches_the_gradient_footprint(name):
    """The input pixels that move one output pixel span exactly the receptive field."""
    model, summary = build_model(net(*RF_NETS[name]), (1, 48, 48), seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.abs_().add_(0.1)  # positive weights: no accidental cancellation
    x = torch.rand(1, 1, 48, 48, requires_grad=True)
    out = model(x)
    out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    cols = x.grad[0, 0].abs().sum(0).nonzero()
    footprint = (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1)
    rf = summary.layers[-1].receptive_field
    assert footprint == (rf, rf)


# ---------------------------------------------------------------------------
# Wiring, outputs, naming, reproducibility
# ---------------------------------------------------------------------------


def test_inputs_default_to_the_previous_layer():
    _, summary = build_model(net(L("linear", "a", out_features=4), L("linear", "b", out_features=2)), FLAT)
    assert [i.inputs for i in summary.layers] == [["input"], ["a"]]


@pytest.mark.parametrize("outputs, num_classes", [(1, 2), (2, 2), (10, 10)])
def test_allowed_output_counts(outputs, num_classes):
    _, summary = build_model(net(L("linear", "out", out_features=outputs)), FLAT, num_classes)
    assert summary.output_shape == (outputs,)


def test_layer_names_with_dots_and_reserved_attribute_names():
    names = ["block1.conv", "train", "keys", "forward", "_modules", "key"]
    layers = [L("conv2d", n, out_channels=2, padding=1) for n in names] + [L("global_avg_pool", "gap")]
    model, summary = build_model(net(*layers), (1, 4, 4), num_classes=2, seed=0)
    assert list(model.blocks.keys()) == names + ["gap"]
    assert "block1.conv" in model.blocks and model.blocks["block1.conv"].spec.name == "block1.conv"
    assert model.inputs["train"] == ["block1.conv"]
    assert model(torch.randn(2, 1, 4, 4)).shape == (2, 2)
    layer_names = {model.layer_of(name) for name, _ in model.named_parameters()}
    assert layer_names == set(names) and model.layer_of("input") is None
    again, _ = build_model(net(*layers), (1, 4, 4), num_classes=2, seed=1)
    again.load_state_dict(model.state_dict())
    for a, b in zip(again.parameters(), model.parameters()):
        assert torch.equal(a, b)


def test_sign_activation_is_allowed_anywhere():
    spec = net(
        L("conv2d", "c", out_channels=2, activation="sign"),
        L("flatten", "f"),
        L("linear", "h", out_features=4, activation="sign"),
        L("linear", "out", out_features=1, activation="sign"),
    )
    model, _ = build_model(spec, (1, 4, 4), num_classes=2)
    out = model(torch.randn(8, 1, 4, 4))
    assert set(out.unique().tolist()) <= {-1.0, 1.0}


def test_same_seed_builds_the_same_weights_and_leaves_the_global_rng_alone():
    spec = net(*BLOCK_NETS["squeeze_excite"][1])
    state = torch.get_rng_state()
    a, _ = build_model(spec, (3, 8, 8), seed=7)
    b, _ = build_model(spec, (3, 8, 8), seed=7)
    c, _ = build_model(spec, (3, 8, 8), seed=8)
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_accepts_a_network_spec_model_and_a_dict():
    spec = net(L("linear", "h", out_features=4, activation="relu"), L("linear", "out", out_features=2))
    a = infer_shapes(spec, FLAT)
    b = infer_shapes(schemas.NetworkSpec.model_validate(spec), FLAT)
    assert a == b


def test_summary_to_dict_is_json_safe():
    _, summary = build_model(net(*BLOCK_NETS["residual"][1]), (4, 8, 8), 10)
    d = json.loads(json.dumps(summary.to_dict()))
    assert d["input_shape"] == [4, 8, 8] and d["output_shape"] == [10]
    assert d["layers"][0] == {
        "name": "stem", "kind": "conv2d", "inputs": ["input"], "output_shape": [8, 8, 8],
        "params": 8 * 4 * 9 + 8, "trainable": True, "macs": 8 * 8 * 8 * 4 * 9,
        "receptive_field": 3, "jump": 1, "activation_bytes": 4 * 8 * 8 * 8,
    }
    assert d["total_params"] == summary.total_params


def test_intermediates_are_released_but_hooks_still_see_them():
    model, _ = build_model(net(*BLOCK_NETS["dense"][1]), (3, 6, 6), 10, seed=0)
    seen = []
    model.blocks["c1"].register_forward_hook(lambda m, a, out: seen.append(out.shape))
    model(torch.randn(2, 3, 6, 6)).sum().backward()
    assert seen == [torch.Size([2, 4, 6, 6])]
    assert all(p.grad is not None for p in model.parameters())
