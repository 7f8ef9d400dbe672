"""The experiment document: one JSON object that says everything about a run.

It is what the page edits, what a URL encodes, what `dlplay run` executes and
what the store keeps. Every kind (layer, activation, initializer, optimizer,
schedule) is a pydantic model with a literal ``kind`` field; the unions below
are discriminated on it, so the JSON schema of this module *is* the registry
of names, parameters, types, ranges and defaults (see ``registry.py``).

A minimal document::

    {"data": {"name": "spiral"},
     "network": {"layers": [
         {"kind": "linear", "name": "hidden", "out_features": 16, "activation": "tanh"},
         {"kind": "linear", "name": "out", "out_features": 2}]},
     "train": {"optimizer": {"kind": "adam", "lr": 0.01}, "epochs": 50}}
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic_core import PydanticCustomError


class Spec(BaseModel):
    """Base of every document part: unknown fields are errors, not silently ignored.

    So are NaN and infinity: JSON has neither, but decoders read ``1e999`` as infinity, and an
    infinite learning rate or clip would only fail later, inside a run.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _kind_shorthand(value: Any) -> Any:
    """Let ``"relu"`` stand for ``{"kind": "relu"}`` so short documents stay short."""
    if isinstance(value, str):
        return {"kind": value}
    return value


# ---------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------


class IdentityAct(Spec):
    kind: Literal["identity"] = "identity"


class SigmoidAct(Spec):
    kind: Literal["sigmoid"] = "sigmoid"


class TanhAct(Spec):
    kind: Literal["tanh"] = "tanh"


class ReLUAct(Spec):
    kind: Literal["relu"] = "relu"


class LeakyReLUAct(Spec):
    kind: Literal["leaky_relu"] = "leaky_relu"
    negative_slope: float = Field(0.01, ge=0.0, le=1.0, description="slope for x < 0; lectures use 0.01 or 0.1")


class PReLUAct(Spec):
    kind: Literal["prelu"] = "prelu"
    init: float = Field(0.25, ge=0.0, le=1.0, description="initial learned slope (He et al. 2015 use 0.25)")
    per_channel: bool = Field(True, description="one slope per channel/feature instead of one shared slope")


class ELUAct(Spec):
    kind: Literal["elu"] = "elu"
    alpha: float = Field(1.0, gt=0.0, le=10.0, description="saturation value -alpha for x -> -inf")


class GELUAct(Spec):
    kind: Literal["gelu"] = "gelu"


class SiLUAct(Spec):
    kind: Literal["silu"] = "silu"


class SoftplusAct(Spec):
    kind: Literal["softplus"] = "softplus"
    beta: float = Field(1.0, gt=0.0, le=100.0, description="sharpness; large beta approaches ReLU")


class MaxoutAct(Spec):
    """Max over groups of ``pieces`` consecutive features/channels: C*k -> C."""

    kind: Literal["maxout"] = "maxout"
    pieces: int = Field(2, ge=2, le=8, description="k affine pieces per output unit")


class SignAct(Spec):
    """The perceptron's step sgn(x) in {-1, +1}; it has zero gradient, so pair it with the perceptron rule."""

    kind: Literal["sign"] = "sign"


ActivationSpec = Annotated[
    Annotated[
        Union[
            IdentityAct, SigmoidAct, TanhAct, ReLUAct, LeakyReLUAct, PReLUAct, ELUAct,
            GELUAct, SiLUAct, SoftplusAct, MaxoutAct, SignAct,
        ],
        Field(discriminator="kind"),
    ],
    BeforeValidator(_kind_shorthand),
]


# ---------------------------------------------------------------------------
# Initializers (per layer, for weights and biases separately)
# ---------------------------------------------------------------------------


class DefaultInit(Spec):
    """PyTorch's own default for the layer (Kaiming-uniform with a=sqrt(5))."""

    kind: Literal["default"] = "default"


class ZerosInit(Spec):
    kind: Literal["zeros"] = "zeros"


class ConstantInit(Spec):
    kind: Literal["constant"] = "constant"
    value: float = Field(0.0, ge=-1e3, le=1e3)


class NormalInit(Spec):
    """N(mean, std^2); ``std=0.01`` is the classic ``0.01*randn``."""

    kind: Literal["normal"] = "normal"
    mean: float = Field(0.0, ge=-1e3, le=1e3)
    std: float = Field(0.01, ge=0.0, le=1e3)


class UniformInit(Spec):
    """U(-a, a)."""

    kind: Literal["uniform"] = "uniform"
    a: float = Field(0.05, ge=0.0, le=1e3)


class XavierNormalInit(Spec):
    """N(0, gain^2 * 2/(fan_in+fan_out)) (Glorot & Bengio 2010)."""

    kind: Literal["xavier_normal"] = "xavier_normal"
    gain: float = Field(1.0, gt=0.0, le=100.0)


class XavierUniformInit(Spec):
    """U(-b, b), b = gain*sqrt(6/(fan_in+fan_out))."""

    kind: Literal["xavier_uniform"] = "xavier_uniform"
    gain: float = Field(1.0, gt=0.0, le=100.0)


class HeNormalInit(Spec):
    """N(0, gain^2/fan), gain = sqrt(2/(1+a^2)) for (leaky) ReLU (He et al. 2015)."""

    kind: Literal["he_normal"] = "he_normal"
    mode: Literal["fan_in", "fan_out"] = "fan_in"
    nonlinearity: Literal["relu", "leaky_relu", "linear", "tanh", "sigmoid"] = "relu"
    a: float = Field(0.0, ge=0.0, le=1.0, description="negative slope, used when nonlinearity is leaky_relu")


class HeUniformInit(Spec):
    """U(-b, b), b = gain*sqrt(3/fan)."""

    kind: Literal["he_uniform"] = "he_uniform"
    mode: Literal["fan_in", "fan_out"] = "fan_in"
    nonlinearity: Literal["relu", "leaky_relu", "linear", "tanh", "sigmoid"] = "relu"
    a: float = Field(0.0, ge=0.0, le=1.0)


class LeCunNormalInit(Spec):
    """N(0, 1/fan_in) (LeCun 1998): what ``randn/sqrt(fan_in)`` is in the lectures."""

    kind: Literal["lecun_normal"] = "lecun_normal"


class OrthogonalInit(Spec):
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2014)."""

    kind: Literal["orthogonal"] = "orthogonal"
    gain: float = Field(1.0, gt=0.0, le=100.0)


class LSUVInit(Spec):
    """Data-dependent: orthogonal, then rescaled so the layer's output variance is 1 on a batch (Mishkin & Matas 2016)."""

    kind: Literal["lsuv"] = "lsuv"
    target_var: float = Field(1.0, gt=0.0, le=100.0)
    tolerance: float = Field(0.05, gt=0.0, le=1.0, description="stop when |var - target| < tolerance")
    max_iters: int = Field(10, ge=1, le=100)


InitSpec = Annotated[
    Annotated[
        Union[
            DefaultInit, ZerosInit, ConstantInit, NormalInit, UniformInit, XavierNormalInit,
            XavierUniformInit, HeNormalInit, HeUniformInit, LeCunNormalInit, OrthogonalInit, LSUVInit,
        ],
        Field(discriminator="kind"),
    ],
    BeforeValidator(_kind_shorthand),
]


# ---------------------------------------------------------------------------
# Layers: a DAG of named nodes. ``inputs`` defaults to the previous layer;
# the network input is called "input".
# ---------------------------------------------------------------------------

IntPair = Union[int, tuple[int, int]]
LayerName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$")]


class LayerBase(Spec):
    name: LayerName = Field(description="unique name; other layers refer to it in their inputs")
    inputs: list[LayerName] | None = Field(
        None, description='names of the layers feeding this one ("input" is the data); default: the previous layer'
    )


class WeightedLayer(LayerBase):
    weight_init: InitSpec = Field(default_factory=DefaultInit)
    bias_init: InitSpec = Field(default_factory=DefaultInit)


class LinearLayer(WeightedLayer):
    """Fully connected y = xW^T + b on (N, F) inputs; a (N, C, H, W) input is flattened first."""

    kind: Literal["linear"] = "linear"
    out_features: int = Field(description="output units")
    bias: bool = True
    activation: ActivationSpec | None = Field(None, description="applied after the affine map")


class Conv2dLayer(WeightedLayer):
    """2D convolution on (N, C, H, W). ``groups == in_channels`` gives a depthwise conv, kernel 1 a pointwise one."""

    kind: Literal["conv2d"] = "conv2d"
    out_channels: int
    kernel_size: IntPair = 3
    stride: IntPair = 1
    padding: Union[IntPair, Literal["same"]] = 0
    dilation: IntPair = 1
    groups: int = 1
    bias: bool = True
    activation: ActivationSpec | None = None


class MaxPool2dLayer(LayerBase):
    kind: Literal["max_pool2d"] = "max_pool2d"
    kernel_size: IntPair = 2
    stride: IntPair | None = Field(None, description="default: kernel_size")
    padding: IntPair = 0


class AvgPool2dLayer(LayerBase):
    kind: Literal["avg_pool2d"] = "avg_pool2d"
    kernel_size: IntPair = 2
    stride: IntPair | None = Field(None, description="default: kernel_size")
    padding: IntPair = 0


class GlobalAvgPoolLayer(LayerBase):
    """(N, C, H, W) -> (N, C)."""

    kind: Literal["global_avg_pool"] = "global_avg_pool"


class FlattenLayer(LayerBase):
    """(N, C, H, W) -> (N, C*H*W)."""

    kind: Literal["flatten"] = "flatten"


class BatchNormLayer(LayerBase):
    """Batch norm over the batch (and spatial) axes; 1d or 2d is chosen from the input shape."""

    kind: Literal["batch_norm"] = "batch_norm"
    momentum: float = Field(0.1, gt=0.0, le=1.0, description="weight of the newest batch in the running stats")
    eps: float = Field(1e-5, gt=0.0, le=1.0)


class LayerNormLayer(LayerBase):
    """Normalizes each example over all its non-batch axes."""

    kind: Literal["layer_norm"] = "layer_norm"
    eps: float = Field(1e-5, gt=0.0, le=1.0)


class GroupNormLayer(LayerBase):
    kind: Literal["group_norm"] = "group_norm"
    num_groups: int = Field(2, description="must divide the channel count")
    eps: float = Field(1e-5, gt=0.0, le=1.0)


class InstanceNormLayer(LayerBase):
    kind: Literal["instance_norm"] = "instance_norm"
    affine: bool = True
    eps: float = Field(1e-5, gt=0.0, le=1.0)


class DropoutLayer(LayerBase):
    """Inverted dropout: kept units are scaled by 1/(1-p) in training, so evaluation needs no rescale."""

    kind: Literal["dropout"] = "dropout"
    p: float = Field(0.5, ge=0.0, lt=1.0, description="drop probability; 0.5 hidden, 0.2 input")
    spatial: bool = Field(False, description="drop whole channels (Dropout2d) instead of single units")


class ActivationLayer(LayerBase):
    kind: Literal["activation"] = "activation"
    activation: ActivationSpec


class AddLayer(LayerBase):
    """Elementwise sum of two or more inputs of the same shape (residual connections)."""

    kind: Literal["add"] = "add"


class ConcatLayer(LayerBase):
    """Concatenation along the channel (or feature) axis (dense connections)."""

    kind: Literal["concat"] = "concat"


class SqueezeExciteLayer(LayerBase):
    """Channel attention: global pool -> FC(C/r) -> ReLU -> FC(C) -> sigmoid -> scale channels (Hu et al. 2018)."""

    kind: Literal["squeeze_excite"] = "squeeze_excite"
    reduction: int = Field(4, ge=1, le=64)


class SpatialAttentionLayer(LayerBase):
    """Spatial attention: [mean_c, max_c] -> conv(k x k) -> sigmoid -> scale positions (CBAM, Woo et al. 2018)."""

    kind: Literal["spatial_attention"] = "spatial_attention"
    kernel_size: int = Field(7, ge=1, le=15)


class MaxoutLayer(WeightedLayer):
    """Maxout unit: max over ``pieces`` affine maps of the input; has pieces x the parameters of a linear layer."""

    kind: Literal["maxout"] = "maxout"
    out_features: int
    pieces: int = Field(2, ge=2, le=8)


LayerSpec = Annotated[
    Union[
        LinearLayer, Conv2dLayer, MaxPool2dLayer, AvgPool2dLayer, GlobalAvgPoolLayer, FlattenLayer,
        BatchNormLayer, LayerNormLayer, GroupNormLayer, InstanceNormLayer, DropoutLayer, ActivationLayer,
        AddLayer, ConcatLayer, SqueezeExciteLayer, SpatialAttentionLayer, MaxoutLayer,
    ],
    Field(discriminator="kind"),
]


class NetworkSpec(Spec):
    """A DAG of layers; the network's output is the last layer."""

    layers: list[LayerSpec] = Field(min_length=1, max_length=256)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


class AugmentSpec(Spec):
    """Random, label-preserving (mostly: a flipped 6 is not a 9, but a flipped b is a d) training-time transforms."""

    hflip: bool = Field(False, description="flip left-right with probability 0.5")
    crop_padding: int = Field(0, ge=0, le=16, description="pad by this many pixels, then crop back at a random offset")
    rotate_degrees: float = Field(0.0, ge=0.0, le=180.0, description="rotate by a uniform angle in [-d, d]")
    noise_std: float = Field(0.0, ge=0.0, le=10.0, description="add N(0, std^2) noise to the (preprocessed) input")


# train.seed is what torch.manual_seed takes: a 64-bit integer, signed or unsigned. A larger one passed
# validation and then failed inside the run ("Overflow when unpacking long").
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1


class DataSpec(Spec):
    name: str = Field(description="a dataset from the registry (see GET /api/registry), or 'upload:<id>'")
    n_samples: int | None = Field(None, ge=4, le=200_000, description="generated sets: how many points/images; real sets: a cap")
    noise: float = Field(0.1, ge=0.0, le=10.0, description="generated sets: noise level")
    val_fraction: float = Field(0.2, ge=0.0, le=0.9, description="share of examples held out for validation")
    train_subset: int | None = Field(None, ge=1, description="keep only the first N training examples (e.g. overfit 20)")
    preprocessing: Literal["none", "center", "standardize"] = Field(
        "none", description="per-channel mean-centering, or centering and division by the std, from training statistics"
    )
    augmentation: AugmentSpec = Field(default_factory=AugmentSpec)
    # Generation and the split draw from NumPy generators, which take any integer (a negative or 2**70 seed is
    # fine); 128 bits is all the entropy they use, so a longer number is refused as the typo it is.
    seed: int = Field(0, ge=-(2**128), le=2**128, description="seed of generation and of the train/validation split")


# ---------------------------------------------------------------------------
# Training: optimizers and schedules
# ---------------------------------------------------------------------------


class SGDOpt(Spec):
    """Plain (mini-batch) gradient descent."""

    kind: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0.0, le=1e7)


class MomentumOpt(Spec):
    kind: Literal["momentum"] = "momentum"
    lr: float = Field(0.01, gt=0.0, le=1e7)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)


class NesterovOpt(Spec):
    kind: Literal["nesterov"] = "nesterov"
    lr: float = Field(0.01, gt=0.0, le=1e7)
    momentum: float = Field(0.9, gt=0.0, lt=1.0)


class AdaGradOpt(Spec):
    kind: Literal["adagrad"] = "adagrad"
    lr: float = Field(0.01, gt=0.0, le=1e7)
    eps: float = Field(1e-10, gt=0.0, le=1.0)


class RMSPropOpt(Spec):
    kind: Literal["rmsprop"] = "rmsprop"
    lr: float = Field(0.001, gt=0.0, le=1e7)
    alpha: float = Field(0.99, gt=0.0, lt=1.0, description="decay of the squared-gradient average")
    eps: float = Field(1e-8, gt=0.0, le=1.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)


class AdamOpt(Spec):
    kind: Literal["adam"] = "adam"
    lr: float = Field(0.001, gt=0.0, le=1e7)
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    eps: float = Field(1e-8, gt=0.0, le=1.0)


class AdamWOpt(Spec):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019)."""

    kind: Literal["adamw"] = "adamw"
    lr: float = Field(0.001, gt=0.0, le=1e7)
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    eps: float = Field(1e-8, gt=0.0, le=1.0)
    weight_decay: float = Field(0.01, ge=0.0, le=10.0)


class LBFGSOpt(Spec):
    """Quasi-Newton; meant for full-batch training (set batch_size to "full")."""

    kind: Literal["lbfgs"] = "lbfgs"
    lr: float = Field(1.0, gt=0.0, le=1e7)
    history_size: int = Field(10, ge=1, le=100)
    max_iter: int = Field(20, ge=1, le=200, description="inner iterations per step")


class PerceptronOpt(Spec):
    """Rosenblatt's rule w <- w + a_t (y - y') x with a_t = lr * tau/(tau + epoch); single-unit sign networks only."""

    kind: Literal["perceptron"] = "perceptron"
    lr: float = Field(1.0, gt=0.0, le=1e7)
    tau: float = Field(1000.0, gt=0.0, le=1e9, description="decay time constant, in epochs")


OptimizerSpec = Annotated[
    Annotated[
        Union[SGDOpt, MomentumOpt, NesterovOpt, AdaGradOpt, RMSPropOpt, AdamOpt, AdamWOpt, LBFGSOpt, PerceptronOpt],
        Field(discriminator="kind"),
    ],
    BeforeValidator(_kind_shorthand),
]


class ConstantSchedule(Spec):
    kind: Literal["constant"] = "constant"


class StepSchedule(Spec):
    """Multiply the LR by ``gamma`` every ``every_epochs`` epochs (halve every k epochs)."""

    kind: Literal["step"] = "step"
    every_epochs: float = Field(10.0, gt=0.0)
    gamma: float = Field(0.5, gt=0.0, le=1.0)


class ExponentialSchedule(Spec):
    """lr0 * exp(-k t), t in epochs."""

    kind: Literal["exponential"] = "exponential"
    k: float = Field(0.1, ge=0.0, le=100.0)


class InverseTimeSchedule(Spec):
    """lr0 / (1 + k t), t in epochs."""

    kind: Literal["inverse_time"] = "inverse_time"
    k: float = Field(0.1, ge=0.0, le=100.0)


class PlateauSchedule(Spec):
    """Multiply the LR by ``factor`` when the validation loss has not improved for ``patience`` evaluations."""

    kind: Literal["plateau"] = "plateau"
    factor: float = Field(0.5, gt=0.0, lt=1.0)
    patience: int = Field(3, ge=0, le=1000)
    min_lr: float = Field(0.0, ge=0.0)


class CosineRestartsSchedule(Spec):
    """SGDR: cosine from lr0 to ``min_lr`` over ``period_epochs``, then restart; periods grow by ``period_mult``."""

    kind: Literal["cosine_restarts"] = "cosine_restarts"
    period_epochs: float = Field(10.0, gt=0.0)
    period_mult: float = Field(1.0, ge=1.0, le=10.0)
    min_lr: float = Field(0.0, ge=0.0)


class CyclicalSchedule(Spec):
    """Triangular cyclical LR (Smith 2017) between ``min_lr`` and lr0, one cycle every ``period_epochs``."""

    kind: Literal["cyclical"] = "cyclical"
    min_lr: float = Field(1e-4, ge=0.0)
    period_epochs: float = Field(4.0, gt=0.0)


ScheduleSpec = Annotated[
    Annotated[
        Union[
            ConstantSchedule, StepSchedule, ExponentialSchedule, InverseTimeSchedule, PlateauSchedule,
            CosineRestartsSchedule, CyclicalSchedule,
        ],
        Field(discriminator="kind"),
    ],
    BeforeValidator(_kind_shorthand),
]


class EarlyStoppingSpec(Spec):
    """Stop when the validation loss has not improved by ``min_delta`` for ``patience`` evaluations."""

    patience: int = Field(5, ge=1, le=10_000)
    min_delta: float = Field(0.0, ge=0.0)


# dlplay issue 12 (export/import): start a run from saved weights; transfer learning reuses it.
class InitFromSpec(Spec):
    """Start from saved weights instead of a fresh initialization: a finished run's, or an uploaded file's.

    The file is a safetensors file dlplay exported (or any state dict under the
    document's layer names); the server finds it from ``run_id`` or ``upload_id``.
    Loaded layers replace their initialization after it (LSUV included); the others keep it.
    """

    run_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$", description="a finished run of this session")
    upload_id: str | None = Field(
        None, pattern=r"^[a-f0-9]{8,32}$", description="a .safetensors file uploaded with POST /api/weights"
    )
    layers: list[LayerName] | None = Field(
        None, description="load only these layers (e.g. the convolutions, for transfer learning); default: all"
    )
    strict: bool = Field(
        True, description="every loaded layer must find all its tensors, shapes equal; false skips those that do not"
    )

    @model_validator(mode="after")
    def _one_source(self) -> "InitFromSpec":
        if (self.run_id is None) == (self.upload_id is None):
            raise ValueError("init_from needs exactly one of run_id (a finished run) or upload_id (an uploaded file)")
        return self


class TrainConfig(Spec):
    loss: Literal["cross_entropy", "mse", "hinge"] = Field(
        "cross_entropy", description="mse is 1/2 ||out - onehot||^2 per example; hinge is the multi-class SVM loss"
    )
    optimizer: OptimizerSpec = Field(default_factory=AdamOpt)
    schedule: ScheduleSpec = Field(default_factory=ConstantSchedule)
    warmup_steps: int = Field(0, ge=0, le=1_000_000, description="linear warm-up from 0 to the scheduled LR")
    batch_size: Union[int, Literal["full"]] = Field(32, description='1 is pure SGD, "full" is batch gradient descent')
    epochs: float | None = Field(
        10.0, gt=0.0, le=100_000,
        description="training length in passes over the training set; null with no max_steps: train until stopped",
    )
    max_steps: int | None = Field(None, ge=1, description="if set, stop after this many steps (wins over epochs)")
    l2: float = Field(0.0, ge=0.0, le=100.0, description="adds l2/2 * sum(w^2) over weights (not biases) to the loss")
    l1: float = Field(0.0, ge=0.0, le=100.0, description="adds l1 * sum(|w|) over weights to the loss")
    grad_clip: float | None = Field(None, gt=0.0, description="clip the global gradient norm to this value")
    early_stopping: EarlyStoppingSpec | None = None
    ema_decay: float | None = Field(
        None, gt=0.0, lt=1.0, description="keep a running average of the weights (decay per step) and evaluate with it"
    )
    freeze: list[LayerName] = Field(default_factory=list, description="layers whose parameters are not trained")
    eval_every: int | None = Field(
        None, ge=1, description="evaluate on the validation split every N steps; default: once per epoch"
    )
    log_every: int = Field(10, ge=1, le=100_000, description="emit a metrics point every N steps")
    explosion_factor: float = Field(3.0, gt=1.0, description="stop when the loss exceeds this multiple of its first value")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available")
    seed: int = Field(0, ge=SEED_MIN, le=SEED_MAX, description="seed of the initial weights, the batches, augmentation and dropout")
    init_from: InitFromSpec | None = Field(None, description="start from saved weights (issue 12); null: fresh init")

    @model_validator(mode="after")
    def _positive_batch(self) -> "TrainConfig":
        if isinstance(self.batch_size, int) and not 1 <= self.batch_size <= 65536:
            raise ValueError('batch_size must be between 1 and 65536, or "full"')
        return self

    @property
    def unbounded(self) -> bool:
        """True when the run trains until it is stopped (no epochs, no max_steps), like TF Playground."""
        return self.epochs is None and self.max_steps is None


# ---------------------------------------------------------------------------
# Probes (what is measured while training; see server/probes)
# ---------------------------------------------------------------------------


# Hint codes of the training doctor (server/probes/doctor.py); a preset may silence those it provokes on purpose.
HintCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
# A live view's name in the frame clock's table (server/live/; GET /api/views lists them).
ViewName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class ProbeConfig(Spec):
    """What is measured while training, and how often (the frame clock in server/live)."""

    enabled: bool = True
    rates: dict[ViewName, Annotated[float, Field(gt=0.0, le=60.0)]] = Field(
        default_factory=dict,
        description="target frames per second of wall time per live view, overriding its default "
        "(boundary 20, layer_stats 5, weights/filters/feature maps/attention 1; GET /api/views)",
    )
    budget: float = Field(0.05, gt=0.0, le=1.0, description="max share of wall time spent computing live views")
    histogram_bins: int = Field(32, ge=4, le=256)
    boundary_resolution: int = Field(64, ge=8, le=256, description="grid cells per side of 2D boundary maps")
    doctor_ignore: list[HintCode] = Field(
        default_factory=list,
        description="doctor hint codes this experiment provokes on purpose (e.g. a lesson on bad init), never shown",
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_step_schedule(cls, value: Any) -> Any:
        """Documents from before the frame clock said ``every``/``heavy_every`` (steps between probes).

        Rates replaced them; a saved or shared document that still has them loads, and they mean nothing now.
        """
        if isinstance(value, dict) and ("every" in value or "heavy_every" in value):
            value = {k: v for k, v in value.items() if k not in ("every", "heavy_every")}
        return value


# ---------------------------------------------------------------------------
# Lessons (dlplay issue 11): a preset's guided steps, one button each on the page
# ---------------------------------------------------------------------------

# A field of the document as a dotted path: object keys, and list items by index ("network.layers.0.weight_init").
DocumentPath = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+){0,15}$")]
# What a lesson's documents are checked with where a step loads "the run this lesson trained last".
LESSON_LAST_RUN = "lesson-last-run"


class LessonChange(Spec):
    """One edit a step's button makes: the field at ``path`` (it must exist) gets ``value``."""

    path: DocumentPath = Field(description='an existing field, e.g. "train.optimizer" or "network.layers.0.weight_init"')
    value: Any = Field(description="its new value as JSON; an object replaces the whole field (kind included)")


class LessonCompare(Spec):
    """Runs started side by side, one per value of ``path``, curves overlaid.

    They share the document's seed, so they start from the same weights and see the same batches:
    only the compared field differs (the optimizer race on real data, batch sizes, schedules).
    """

    path: DocumentPath = Field(description="the field that differs between the runs")
    values: list[Any] = Field(min_length=2, max_length=8, description="one value per run")
    labels: list[Annotated[str, StringConstraints(min_length=1, max_length=40)]] = Field(
        description="each run's legend label, one per value")

    @model_validator(mode="after")
    def _one_label_per_value(self) -> "LessonCompare":
        if len(self.labels) != len(self.values):
            raise ValueError(f"compare has {len(self.values)} values but {len(self.labels)} labels; give one label per value")
        return self


class LessonProbe(Spec):
    """An on-demand view the step asks for (the websocket ``probe`` command), with its arguments."""

    view: ViewName = Field(description="an on-demand view of server/live, e.g. fgsm or optimizer_race")
    args: dict[str, Union[bool, int, float, str]] = Field(default_factory=dict, description="the view's arguments")


class LessonStep(Spec):
    """One step of a guided lesson: what to do and notice, and what its button does (in this order)."""

    text: str = Field(min_length=1, max_length=1000, description="what to do and what to notice, for the class")
    apply: list[LessonChange] = Field(
        default_factory=list, description="edits of the document, in order; empty when the step only says what to do")
    load_from_last_run: list[LayerName] | None = Field(
        None, description="transfer learning: set train.init_from to the run this lesson trained last, loading these layers")
    compare: LessonCompare | None = Field(None, description="start these runs side by side instead of one")
    probe: LessonProbe | None = Field(None, description="ask the current run for this on-demand view")


class LessonSpec(Spec):
    """The guided lesson a preset teaches: a few steps, each with a button that makes its changes."""

    number: int = Field(ge=1, le=99, description="the lesson's number in the curriculum (shared/CURRICULUM.md)")
    title: str = Field(min_length=1, max_length=200)
    steps: list[LessonStep] = Field(min_length=1, max_length=20)


def document_error(path: str, problem: str, fix: str) -> PydanticCustomError:
    """A cross-field problem found by a model validator, with the field it is about.

    pydantic locates such an error at the model itself; ``path`` (dotted, from the document's root)
    and ``fix`` travel in its context so POST /api/validate reports them like a field's error.
    """
    # The message says it all (dlplay run and scripts print it as is); /api/validate splits it up again.
    return PydanticCustomError("document", "{path}: {problem}. Fix: {fix}", {"problem": problem, "path": path, "fix": fix})


def _error_path(error: Any) -> str:
    """The dotted path of one pydantic error: its ``loc``, or the field a ``document_error`` names."""
    path = ".".join(map(str, error["loc"]))
    if error["type"] == "document":
        path = ".".join(filter(None, (path, error["ctx"]["path"])))
    return path


def apply_changes(document: dict[str, Any], changes: list[LessonChange]) -> dict[str, Any]:
    """A copy of ``document`` (an experiment as JSON) with each change made in order.

    Raises ValueError when a path names no field of the document as it stands (a key it does not
    have, an index past the end of a list): a lesson can only change what the document has.
    """
    document = copy.deepcopy(document)
    for change in changes:
        *parents, last = change.path.split(".")
        node: Any = document
        for depth, key in enumerate([*parents, last]):
            where = ".".join([*parents, last][:depth]) or "the document"
            if isinstance(node, list):
                if not key.isdigit() or int(key) >= len(node):
                    raise ValueError(f"{change.path!r}: {where} is a list of {len(node)} items; {key!r} is not an index of it")
                key = int(key)  # type: ignore[assignment]
            elif not isinstance(node, dict) or key not in node:
                fields = ", ".join(node) if isinstance(node, dict) else "no fields"
                raise ValueError(f"{change.path!r}: {where} has no field {key!r} (it has {fields})")
            if depth == len(parents):
                node[key] = copy.deepcopy(change.value)
            else:
                node = node[key]
    return document


def lesson_documents(experiment: "Experiment") -> list["Experiment"]:
    """The document after each step's button, pressed in order from the preset: one Experiment per step.

    A step's compared runs and its ``load_from_last_run`` are checked too (the latter with
    ``LESSON_LAST_RUN`` for the run id). Raises ValueError naming the step and what is wrong.
    """
    if experiment.lesson is None:
        return []
    document = experiment.model_dump(mode="json", exclude={"lesson"})
    out = []
    for number, step in enumerate(experiment.lesson.steps, start=1):
        try:
            document = apply_changes(document, step.apply)
            if step.load_from_last_run is not None:
                names = {layer["name"] for layer in document["network"]["layers"]}
                unknown = [name for name in step.load_from_last_run if name not in names]
                if unknown:
                    raise ValueError(f"load_from_last_run names {', '.join(map(repr, unknown))}, which the network does not have")
                document["train"]["init_from"] = {"run_id": LESSON_LAST_RUN, "layers": step.load_from_last_run}
            current = Experiment.model_validate(document)
            # The next step sees every field, defaults included (a new optimizer object gains its momentum field).
            document = current.model_dump(mode="json", exclude={"lesson"})
            if step.compare is not None:
                for value in step.compare.values:
                    Experiment.model_validate(apply_changes(document, [LessonChange(path=step.compare.path, value=value)]))
        except ValidationError as error:
            problems = "; ".join(f"{_error_path(e) or 'document'}: {e['msg']}" for e in error.errors())
            raise ValueError(f"lesson step {number} leaves an invalid document ({problems})") from None
        except ValueError as error:
            raise ValueError(f"lesson step {number}: {error}") from None
        out.append(current)
    return out


class Experiment(Spec):
    """Everything about one run: data, network, training, probes (and, for a lesson preset, its guided steps)."""

    version: Literal[1] = 1
    name: str = Field("untitled", max_length=200)
    description: str = Field("", max_length=5000)
    data: DataSpec
    network: NetworkSpec
    train: TrainConfig = Field(default_factory=TrainConfig)
    probes: ProbeConfig = Field(default_factory=ProbeConfig)
    lesson: LessonSpec | None = Field(None, description="the guided lesson this document teaches (issue 11); null: none")

    @model_validator(mode="after")
    def _freeze_names_layers(self) -> "Experiment":
        """train.freeze names layers of this network (checked here, not once the run is queued)."""
        names = [layer.name for layer in self.network.layers]
        unknown = [name for name in self.train.freeze if name not in names]
        if unknown:
            raise document_error(
                "train.freeze",
                f"names {', '.join(map(repr, unknown))}, which the network does not have",
                f"freeze some of the network's layers: {', '.join(names)}",
            )
        return self

    @model_validator(mode="after")
    def _lesson_steps_apply(self) -> "Experiment":
        """Every step's changes name fields the document has, and leave a valid document (pressed in order)."""
        lesson_documents(self)
        return self
