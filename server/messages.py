"""The protocol's shapes: one pydantic model per websocket message and per page command.

This file is the one source of the wire protocol (STYLE.md habit 11):

- ``server/protocol.py`` builds the messages as plain dicts. It does not validate them:
  a pydantic round per message would cost training speed, and the hot path sends
  hundreds a second. The tests validate what real sessions emit against these
  models instead (``validate_message``), so a field sent without a model, or a
  message type without one, fails a test.
- ``frontend/scripts/gen_protocol.py`` turns these models into the page's types
  (``frontend/src/protocol.ts``) and into the generated sections of
  ``server/PROTOCOL.md`` (field tables, one example per message, the error codes).
  ``npm run check`` fails when either is stale.

Conventions the generator relies on:

- A field without a default is always sent; ``Optional[T]`` there means it is sent as null
  when it has no value (TypeScript ``name: T | null``). ``omittable(...)`` marks a key that
  may be absent (``name?: T``); it is never null when present unless its type says so.
- A model's docstring describes the message; each field's ``description`` says what it
  means and its unit; ``model_config["json_schema_extra"]["examples"][0]`` is its example,
  a complete message that validates against the model.
- Named type aliases (``TypeAliasType``) become named TypeScript types.

This module imports nothing from the engine (no torch), so the generator runs on any
Python with pydantic.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypeAliasType

from server.schemas import Experiment

# ---------------------------------------------------------------------------
# Field helpers
# ---------------------------------------------------------------------------


def omittable(description: str, **kwargs: Any) -> Any:
    """A field whose key may be missing from the message.

    Its annotation says what the value is when present: ``float`` (never null) or
    ``Optional[str]`` (may be null too). pydantic does not validate the default, so an
    absent key reads as None while an explicit null still has to pass the annotation.
    """
    return Field(None, description=description, **kwargs)


# Documentation of the named types (a TypeAliasType cannot carry a docstring): name -> text.
TYPE_DOCS: dict[str, str] = {}


def named_type(name: str, value: Any, doc: str) -> Any:
    """A type alias that keeps its name in the generated TypeScript (``export type <name> = ...``)."""
    TYPE_DOCS[name] = doc
    return TypeAliasType(name, value)


def example(message: dict[str, Any]) -> ConfigDict:
    """The ``model_config`` that attaches one example message to a model."""
    return ConfigDict(json_schema_extra={"examples": [message]})


def example_of(model: type[BaseModel]) -> dict[str, Any]:
    """The example message attached to ``model`` with ``example``."""
    extra = model.model_config.get("json_schema_extra")
    if not isinstance(extra, dict) or not extra.get("examples"):
        raise LookupError(f"{model.__name__} has no example; add model_config = example({{...}})")
    return extra["examples"][0]


class WireModel(BaseModel):
    """Base of every protocol model: a field the model does not name is an error."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------

WireNumber = named_type(
    "WireNumber",
    Union[float, Literal["nan", "inf", "-inf"]],
    "A float on the wire: NaN and infinities, which JSON cannot carry, arrive as the strings "
    '"nan", "inf", "-inf", so a loss that blows up still reaches the charts.',
)

Shape = named_type(
    "Shape",
    list[int],
    "A tensor shape without the batch axis: [1, 28, 28] for an MNIST image, [2] for a 2D point.",
)

RunState = named_type(
    "RunState",
    Literal["queued", "starting", "running", "paused", "stopped", "finished", "failed", "interrupted", "deleted"],
    "A run's state. Streams send queued, running, paused, stopped, finished and failed; a stored run "
    "(no longer in memory) can also be interrupted (the server stopped while it was active). "
    "starting (building the model) and deleted are the scheduler's and the page's own states.",
)

StopReason = named_type(
    "StopReason",
    Literal["finished", "non_finite", "exploded", "early_stopping", "stopped", "error"],
    "Why a run ended: finished (its steps or epochs are done), non_finite (the loss became NaN/inf), "
    "exploded (the loss grew far above its start), early_stopping (validation stopped improving), "
    "stopped (by the user or a time limit), error (the run failed; an error message came first).",
)

DatasetKind = named_type(
    "DatasetKind",
    Literal["2d", "image", "tabular"],
    "What the examples are: points of the plane, images (C, H, W), or feature vectors.",
)


class Image(WireModel):
    """An image inside a message: a base64 PNG with its size, never a list of floats."""

    w: int = Field(description="width in pixels")
    h: int = Field(description="height in pixels")
    c: Literal[1, 3, 4] = Field(description="channels: 1 grey, 3 RGB, 4 RGBA")
    png: str = Field(description="the PNG file in base64, without a data: prefix")


class LayerInfo(WireModel):
    """One layer of the network as the builder sees it (``builder.LayerInfo``); no batch axis anywhere."""

    name: str = Field(description="the layer's name in the document")
    kind: str = Field(description="the layer kind, e.g. conv2d, linear, max_pool2d")
    inputs: list[str] = Field(description='names of the layers it reads ("input" is the data)')
    output_shape: Shape = Field(description="shape of its output, after its activation")
    params: int = Field(description="number of parameters")
    trainable: bool = Field(description="whether it has parameters to train")
    macs: int = Field(description="multiply-adds per example")
    receptive_field: Optional[int] = Field(
        description="side of its receptive field in input pixels; null for flat outputs"
    )
    jump: Optional[int] = Field(
        description="input pixels per output pixel (product of strides so far); null for flat outputs"
    )
    activation_bytes: int = Field(description="float32 bytes of its output per example")


class NetworkSummary(WireModel):
    """The network's per-layer shapes and costs and their totals (``builder.NetworkSummary.to_dict()``)."""

    input_shape: Shape = Field(description="shape of one input example")
    output_shape: Shape = Field(description="shape of the network's output for one example")
    layers: list[LayerInfo] = Field(description="every layer, in the document's order")
    total_params: int = Field(description="parameters of the whole network")
    total_macs: int = Field(description="multiply-adds per example, all layers")
    activation_bytes: int = Field(description="float32 bytes of all layers' outputs per example")


class ValidationProblem(WireModel):
    """One problem with an experiment document, as ``POST /api/validate`` reports it."""

    model_config = ConfigDict(title="ValidationError")

    layer: Optional[str] = Field(
        description='the offending layer\'s name ("#3" for an unnamed one); null for whole-document problems'
    )
    problem: str = Field(description="what is wrong")
    fix: str = Field(description="what would fix it")
    message: str = Field(description="the full sentence: \"layer 'conv2': <problem>. Fix: <fix>\"")
    path: Optional[str] = omittable(
        'dotted path in the document, e.g. "network.layers.2.out_channels" or "data" (the server always sends it)'
    )


class HistogramStats(WireModel):
    """Summary statistics of a tensor's finite values and their histogram.

    ``hist`` counts values in ``len(hist)`` equal bins over ``edges = [lo, hi]``; the range
    follows the data. NaN and infinities are left out of every figure and counted in ``nonfinite``.
    """

    mean: float = Field(description="mean of the finite values")
    std: float = Field(description="sample standard deviation of the finite values (0 for fewer than two)")
    min: float = Field(description="smallest finite value")
    max: float = Field(description="largest finite value")
    hist: list[int] = Field(description="counts per bin (probes.histogram_bins bins)")
    edges: tuple[float, float] = Field(description="[lo, hi]: the range the bins split evenly")
    nonfinite: int = Field(description="how many values were NaN or infinite")


# ---------------------------------------------------------------------------
# Live views (the frame clock) and on-demand probes
# ---------------------------------------------------------------------------

LiveViewName = named_type(
    "LiveViewName",
    Literal["layer_stats", "weights", "filters", "boundary", "feature_maps", "saliency", "gradcam", "attention",
            "evaluation"],
    "A live view the server's frame clock can stream (GET /api/views lists them with their rates and arguments).",
)

# The messages each live view sends. A message of these types may carry ``rate_hz``.
LIVE_VIEW_MESSAGES: dict[str, tuple[str, ...]] = {
    "layer_stats": ("activations", "gradients"),
    "weights": ("weights",),
    "filters": ("filters",),
    "boundary": ("boundary",),
    "feature_maps": ("feature_maps",),
    "saliency": ("saliency",),
    "gradcam": ("gradcam",),
    "attention": ("attention",),
    "evaluation": ("confusion", "misclassified"),
}
LIVE_FRAME_TYPES = frozenset(t for types in LIVE_VIEW_MESSAGES.values() for t in types)

ProbeKind = named_type(
    "ProbeKind",
    Literal["weights", "filters", "feature_maps", "saliency", "gradcam", "attention", "boundary", "evaluation",
            "confusion", "misclassified", "backprop_trace", "gradient_check", "fgsm", "fgsm_sweep", "optimizer_race"],
    "A view the page can ask for once with the `probe` command (runner.ON_DEMAND_PROBES): the on-demand views "
    "of server/live, and confusion or misclassified for the evaluation view.",
)


# ---------------------------------------------------------------------------
# Error codes
# ---------------------------------------------------------------------------

# Every ``code`` an ``error`` message can carry, and when it is sent. "Reply" errors go only to
# the client whose command caused them and carry no seq; "stream" errors are part of a run's
# stream (stamped, seen by every subscriber, replayed on subscribe).
ERROR_CODES: dict[str, str] = {
    "bad_session": "reply: the websocket's ?session= is not a session token this server issued (POST /api/session "
                   "gives one); the socket then closes (1008)",
    "too_many_sessions": "reply: a websocket without a session, from an address that has been issued "
                         "max_sessions_per_ip_per_hour sessions in the last hour; the socket then closes (1008)",
    "too_large": "reply: a command longer than the server's max_message_bytes; reply to `start`: the run would need "
                 "more memory (max_run_memory_bytes) or more multiply-adds per step (max_step_macs) than the server "
                 "allows at its real batch size (server/cost.py: the message names the largest layer and the fix)",
    "too_busy": "reply: this connection already has 16 commands being carried out (stop and pause have 16 more "
                "places of their own, so a page can always stop its run), or the run has a heavy probe "
                "(gradient_check, fgsm_sweep, optimizer_race, saliency) still being computed, or too many commands "
                "waiting; wait for the replies",
    "bad_frame": "reply: a binary websocket frame; commands are JSON text frames",
    "bad_json": "reply: a command that is not JSON, uses NaN or Infinity (not JSON), or nests arrays and objects "
                "more than 32 levels deep (protocol.MAX_COMMAND_DEPTH)",
    "bad_command": 'reply: JSON that is not an object such as {"cmd": "ping"}',
    "unknown_command": "reply: a `cmd` the server does not know",
    "bad_arguments": "reply: a command's arguments are missing or wrong (a number out of range: an integer beyond "
                     "64 bits or a literal such as 1e999 that reads as infinity; no run_id, a bad after_seq, set without a value, "
                     "an unknown view or view argument, a probe's index or class out of range, a predict input of the "
                     "wrong size, a value the trainer refuses); stream: a watched view stopped applying (e.g. its "
                     "example index is beyond the validation split)",
    "not_found": "reply: the run_id is not a run of this session",
    "invalid_experiment": "reply to `start`: the document does not validate (every problem in `errors`); "
                          "stream: the run could not be built on its device",
    "no_cuda": "reply to `start`: train.device is cuda and the server has no CUDA GPU",
    "too_many_runs": "reply to `start`: this session already has its maximum of runs training and waiting, or this "
                     "address has max_runs_per_ip across its sessions",
    "server_busy": "reply to `start`: the server's queue is full",
    "shutting_down": "reply to `start`: the server is shutting down",
    "queued": "reply: a run command other than `stop` while the run waits in the queue",
    "bad_state": "reply: the command needs a running or paused run and this one is in another state (e.g. starting), "
                 "or `views` for a run this connection has not subscribed to",
    "run_ended": "reply: the command needs an active run and this one has ended",
    "run_closed": "reply to `probe`/`predict`: the run has ended and its model is no longer loaded",
    "not_in_memory": "reply: the run is no longer in the server's memory (ended long ago, or the server restarted)",
    "out_of_memory": "reply to `probe`: the probe ran out of memory; stream: the run did (its process may allocate "
                     "max_run_memory_bytes; or the GPU's), and failed alone",
    "command_failed": "reply: a command failed on an unexpected server error, a bug (the message names the exception, "
                      "the server logs it); nothing a client sends should cause it",
    "run_failed": "stream: the run crashed on an unexpected error; `final` and `status failed` follow",
    "busy": "stream: the run could not get its dataset in time, because another large one was being made "
            "(data_cache.DatasetBusy); `final` and `status failed` follow; start it again in a moment",
    "run_crashed": "stream: the run's process ended without a word (killed from outside, or a crash in native code); "
                   "`final` and `status failed` follow, the other runs go on",
    "run_finished": "stream: `step` on a run that has already ended",
    "ray_unavailable": "stream: with isolation 'ray' (dlplay class --ray), Ray is not installed or the cluster could not "
                       "be reached when the run was to start; `final` and `status failed` follow",
    "time_limit": "stream: the run reached the server's max_run_seconds and was stopped; `final` follows",
    # The classroom (issue 10; server/classroom.py). "REST" codes come in {"detail", "code"} bodies of /api/class.
    "not_in_class": "while a class is open: a websocket without a member's session or the teacher's key (sent, then "
                    "the socket closes with 4401), or a member's connection after they were kicked or the class ended; "
                    "REST 401: an API request without either",
    "over_quota": "reply to `start` by a class member: the run would take more steps, parameters or multiply-adds per "
                  "step than the class's quotas allow (the message names the quota and the fix); REST 429: a member's "
                  "upload beyond their quota of files",
    "locked_field": "reply to `start` by a class member: the run changes a field the teacher's lesson locks (the "
                    "message names the field, both values and what may be changed)",
    "no_class": "REST 404: no class is open on this server; /ws/class closes with 4401",
    "not_teacher": "REST 403: a teacher's route without the teacher's key or cookie; /ws/class closes with 4403",
    "bad_code": "REST 403: POST /api/class/join with a code that is not the open class's",
    "bad_name": "REST 400: a display name that is empty, longer than 40 characters or holds control characters",
    "name_taken": "REST 409: another member of the class has that display name (compared case-insensitively)",
    "joining_closed": "REST 403: the teacher has closed joining",
    "class_full": "REST 403: the class has its maximum of members (classroom.MAX_MEMBERS)",
    "class_ended": "REST 410: the class has ended (joining it, or a teacher's change to it); reply to `start` by a "
                   "member of a class that ended",
    "too_many_attempts": "REST 429: this address sent max_access_attempts_per_ip_per_hour wrong join codes or teacher "
                         "keys in the last hour",
    "no_member": "REST 404: a kick names no member of the class",
    "bad_lesson": "REST 400: a pushed lesson that is not one: its experiment does not validate or would not start, "
                  "an editable path names no field, a challenge without a positive param_budget",
    "leaderboard_hidden": "REST 403: a member asks for the leaderboard before the teacher published it",
}

ErrorCode = named_type(
    "ErrorCode",
    Literal[tuple(ERROR_CODES)],
    "Why a command or a run failed.",
)

HintCode = named_type(
    "HintCode",
    Literal["lr_too_high", "lr_too_low", "initial_loss", "overfitting", "underfitting", "dead_relu", "saturated",
            "update_ratio_high", "update_ratio_low"],
    "A diagnosis of the training doctor (server/probes/doctor.py); each is sent at most once per run.",
)

HintSeverity = named_type(
    "HintSeverity",
    Literal["info", "warning", "error"],
    "error: the run is broken; warning: it is going wrong; info: worth knowing.",
)

HintChart = named_type(
    "HintChart",
    Literal["loss", "activations", "gradients", "updates"],
    "The chart that shows a hint's symptom.",
)


# ---------------------------------------------------------------------------
# Envelopes
# ---------------------------------------------------------------------------


class Envelope(WireModel):
    """Fields every message of a run's stream carries (``protocol.Stamper`` adds them)."""

    run_id: str = Field(description="the run the message belongs to")
    seq: int = Field(
        description="1, 2, 3, ... per run, with no gaps; a client that reconnects sends "
        "`subscribe {run_id, after_seq}` and gets every message after it (images: the newest of each type)"
    )
    t: float = Field(description="seconds since the run's stream began (when it was queued)")
    request_id: Any = omittable(
        "the `id` of the command that caused the message, when it had one "
        "(e.g. the first `status queued` after a `start`)"
    )
    rate_hz: float = omittable(
        "live-view frames only: the frames per second of wall time the server's frame clock streams this "
        "view at now; below the view's target rate when its cost did not fit the probe budget"
    )

    @model_validator(mode="after")
    def _rate_only_on_live_frames(self) -> "Envelope":
        kind = getattr(self, "type", None)
        if self.rate_hz is not None and kind not in LIVE_FRAME_TYPES:
            raise ValueError(f"rate_hz is for live-view frames ({', '.join(sorted(LIVE_FRAME_TYPES))}), not {kind!r}")
        return self


class DirectEnvelope(WireModel):
    """Fields of messages that may also come outside a run's stream, as a reply to one client.

    A reply carries no ``seq`` (and no ``t``); ``run_id`` when it is about a run. The same
    types also occur inside a run's stream, stamped like every other message there.
    """

    run_id: str = omittable("the run the message is about, when it is about one")
    seq: int = omittable("the message's place in its run's stream; absent on a reply to one client")
    t: float = omittable("seconds since the run's stream began; absent on a reply to one client")
    request_id: Any = omittable("the `id` of the command this replies to, when it had one")


# ---------------------------------------------------------------------------
# Server -> page messages
# ---------------------------------------------------------------------------


class DatasetInfo(WireModel):
    """The run's data: what the examples are and how many."""

    name: str = Field(description="registry name, or upload:<id>")
    kind: DatasetKind = Field(description="2d, image or tabular")
    classes: list[str] = Field(description="class names, index = label")
    input_shape: Shape = Field(description="shape of one example")
    n_train: int = Field(description="training examples")
    n_val: int = Field(description="validation examples")
    source: str = Field(description="where the data comes from")
    licence: str = Field(description="the data's licence")


class LoadedWeights(WireModel):
    """Saved weights a run started from (``train.init_from``), as the trainer applied them."""

    run_id: Optional[str] = Field(description="the run whose weights were loaded; null for an uploaded file")
    upload_id: Optional[str] = Field(description="the uploaded .safetensors file; null for a run's weights")
    layers: list[str] = Field(description="the layers whose weights were loaded (the others kept their fresh init)")


class SummaryMsg(Envelope):
    """The first message of a run's training: the data and the network.

    Each layer's shapes, parameters, multiply-adds (``macs``, per example), receptive field and
    activation memory. Shapes never include the batch axis. ``steps_per_epoch`` and
    ``total_steps`` size the progress bar.
    """

    model_config = example({
        "type": "summary", "run_id": "3f2a9c1e", "seq": 2, "t": 0.4152,
        "experiment_name": "One hidden layer on the spiral",
        "device": "cpu",
        "dataset": {"name": "spiral", "kind": "2d", "classes": ["arm 1", "arm 2"], "input_shape": [2], "n_train": 480,
                    "n_val": 120, "source": "generated by dlplay, deterministic from the seed",
                    "licence": "MIT (generated by dlplay)"},
        "network": {"input_shape": [2], "output_shape": [2], "layers": [
            {"name": "hidden", "kind": "linear", "inputs": ["input"], "output_shape": [32], "params": 96, "trainable": True,
             "macs": 64, "receptive_field": None, "jump": None, "activation_bytes": 128},
            {"name": "out", "kind": "linear", "inputs": ["hidden"], "output_shape": [2], "params": 66, "trainable": True,
             "macs": 64, "receptive_field": None, "jump": None, "activation_bytes": 8}],
            "total_params": 162, "total_macs": 128, "activation_bytes": 136},
        "steps_per_epoch": 15,
        "total_steps": 30,
    })

    type: Literal["summary"]
    experiment_name: str = Field(description="the experiment document's name")
    device: str = Field(description='where it trains: "cpu", "cuda" or "cuda:N"')
    dataset: DatasetInfo = Field(description="the data")
    network: NetworkSummary = Field(description="the network's layers, shapes and costs")
    steps_per_epoch: int = Field(description="optimizer steps per pass over the training set")
    total_steps: Optional[int] = Field(description="steps the run will take; null when it trains until stopped")
    frozen: list[str] = omittable("layers whose parameters are not trained (train.freeze); absent: none")
    loaded_from: Optional[LoadedWeights] = omittable(
        "where saved weights came from (train.init_from: transfer learning); absent or null: a fresh initialization"
    )


class MetricsMsg(Envelope):
    """One point of the training curves, every ``train.log_every`` steps and at each evaluation.

    ``train_loss``/``train_acc`` are means over the steps since the previous point (null on an
    evaluation-only point); ``val_loss``/``val_acc`` are null when no evaluation ran at this step.
    """

    model_config = example({
        "type": "metrics", "run_id": "3f2a9c1e", "seq": 5, "t": 0.7152,
        "step": 5, "epoch": 0.333333, "train_loss": 0.733201, "train_acc": 0.525, "val_loss": None, "val_acc": None,
        "lr": 0.03, "examples_per_s": 322.788,
    })

    type: Literal["metrics"]
    step: int = Field(description="optimizer steps done")
    epoch: float = Field(description="passes over the training set done (step / steps_per_epoch)")
    train_loss: Optional[WireNumber] = Field(
        description="mean training loss since the previous point; null on an evaluation-only point"
    )
    train_acc: Optional[float] = Field(
        description="mean training accuracy since the previous point, in [0, 1]; null like train_loss"
    )
    val_loss: Optional[WireNumber] = Field(description="validation loss; null when no evaluation ran at this step")
    val_acc: Optional[float] = Field(
        description="validation accuracy in [0, 1]; null when no evaluation ran at this step"
    )
    lr: float = Field(description="the learning rate in force at this step (after schedule and warm-up)")
    examples_per_s: Optional[WireNumber] = Field(
        description="training examples per second over the interval; null on an evaluation-only point"
    )


class HyperparamValues(WireModel):
    """Hyperparameters changed live, with the values now in force; only the changed ones are present."""

    lr: float = omittable("base learning rate (the schedule continues from it)")
    momentum: float = omittable("momentum (SGD family, RMSprop) or beta1 (Adam, AdamW)")
    weight_decay: float = omittable("l2 coefficient (AdamW: its decoupled decay)")
    dropout: float = omittable("p of every dropout layer")
    steps_per_s: Optional[float] = Field(
        None, description="after a `speed` command: the most optimizer steps per second; null = as fast as the machine goes"
    )


class HyperparamsMsg(Envelope):
    """Acknowledges a live change (`set`, `speed`) with the values now in force."""

    model_config = example({
        "type": "hyperparams", "run_id": "3f2a9c1e", "seq": 57, "t": 4.2,
        "step": 12, "values": {"lr": 0.5},
    })

    type: Literal["hyperparams"]
    step: int = Field(description="the step after which the new values apply")
    values: HyperparamValues = Field(description="the changed values")


class StatusMsg(DirectEnvelope):
    """A run's state changed.

    Over the websocket every run's first message (seq 1) is ``status queued``, sent before
    ``summary``; it echoes the start command's ``id`` as ``request_id``, so the client learns the
    run id at once. Subscribing to a run that is no longer in memory replays its stored history
    and ends with a ``status`` that has no ``seq``.
    """

    model_config = example({
        "type": "status", "run_id": "3f2a9c1e", "seq": 1, "t": 0.0,
        "state": "queued", "position": 2, "request_id": 7,
    })

    type: Literal["status"]
    state: RunState = Field(description="the run's state now")
    position: int = omittable("place in the device queue when state is queued; 1 = next in line")
    message: Optional[str] = Field(None, description="why, in plain language: a failure's cause, how the run ended")


class FinalMsg(Envelope):
    """The last message of a run's training (a ``status`` with the end state follows)."""

    model_config = example({
        "type": "final", "run_id": "3f2a9c1e", "seq": 19, "t": 4.7153,
        "steps": 30, "epochs": 2.0, "stop_reason": "finished", "message": "Finished: 30 steps, 2 epochs.",
        "train_loss": 0.663477, "val_loss": 0.66135, "val_acc": 0.575, "best_val_acc": 0.575, "wall_s": 4.344,
        "probe_share": 0.1389,
    })

    type: Literal["final"]
    steps: int = Field(description="optimizer steps done")
    epochs: float = Field(description="passes over the training set done")
    stop_reason: StopReason = Field(description="why the run ended")
    message: str = Field(description="why, in plain language")
    train_loss: Optional[WireNumber] = Field(description="the last logged training loss; null when none was logged")
    val_loss: Optional[WireNumber] = Field(
        description="validation loss at the end; null when the run diverged or never evaluated"
    )
    val_acc: Optional[float] = Field(description="validation accuracy at the end; null like val_loss")
    best_val_acc: Optional[float] = Field(
        description="the best validation accuracy of any evaluation; null when none ran"
    )
    wall_s: float = Field(description="seconds from the start of training to its end")
    probe_share: float = omittable(
        "share of the run's busy time spent computing probes and live views; absent when the run never trained"
    )


class ErrorMsg(DirectEnvelope):
    """A command or a run failed.

    A rejected command changed nothing, and the connection stays usable. Replies to a command go
    only to the client that sent it, carry no ``seq``, and echo the command's ``id`` as
    ``request_id`` (and its ``run_id`` when it was about a run). Errors inside a run's stream are
    stamped like every other message of it. ``message`` names the culprit and the fix.
    """

    model_config = example({
        "type": "error", "request_id": 8, "code": "invalid_experiment",
        "message": "layer 'conv2': input is 6x5x5 but the 7x7 kernel needs at least 7x7 (with padding 0). "
                   "Fix: use a kernel of at most 5, add padding, or remove a pooling layer before it",
        "errors": [{"layer": "conv2", "problem": "input is 6x5x5 but the 7x7 kernel needs at least 7x7 (with padding 0)",
                    "fix": "use a kernel of at most 5, add padding, or remove a pooling layer before it",
                    "message": "layer 'conv2': input is 6x5x5 but the 7x7 kernel needs at least 7x7 (with padding 0). "
                               "Fix: use a kernel of at most 5, add padding, or remove a pooling layer before it",
                    "path": "network.layers.2"}],
    })

    type: Literal["error"]
    code: ErrorCode = Field(description="what kind of failure (see Error codes)")
    message: str = Field(description="what went wrong and what would fix it, in plain language")
    errors: list[ValidationProblem] = omittable("invalid_experiment: every problem, as POST /api/validate reports them")


class PongMsg(DirectEnvelope):
    """The reply to ``ping``, to the client that sent it only."""

    model_config = example({"type": "pong", "t": 1767225600.125, "request_id": "p1"})

    type: Literal["pong"]
    t: float = Field(description="the server's clock: seconds since 1970-01-01 UTC")


class ActivationLayerStats(HistogramStats):
    """One layer's output on a training batch."""

    layer: str = Field(description="the layer's name")
    kind: str = Field(description="the layer kind")
    act: str = Field(description='its activation ("relu", "tanh", ..., "identity")')
    dead_fraction: Optional[float] = Field(
        description="ReLU-like layers: share of units that output <= 0 (leaky kinds: < 0) for the whole batch; else null"
    )
    saturated_fraction: Optional[float] = Field(
        description="tanh/sigmoid layers: share of outputs in the flat tails (|tanh| > 0.99, sigmoid outside [0.01, 0.99]); else null"
    )


class ActivationsMsg(Envelope):
    """Per-layer activation statistics on a training batch: the live view ``layer_stats`` (with ``gradients``)."""

    model_config = example({
        "type": "activations", "run_id": "3f2a9c1e", "seq": 10, "t": 1.7153, "rate_hz": 5.0,
        "step": 25,
        "layers": [
            {"layer": "hidden", "kind": "linear", "act": "tanh", "mean": 0.0391577, "std": 0.318187, "min": -0.727833,
             "max": 0.757919, "hist": [11, 6, 20, 9], "edges": [-0.727833, 0.757919], "nonfinite": 0,
             "dead_fraction": None, "saturated_fraction": 0.0},
            {"layer": "out", "kind": "linear", "act": "identity", "mean": -0.109476, "std": 0.266581, "min": -0.721225,
             "max": 0.400818, "hist": [2, 0, 7, 23], "edges": [-0.721225, 0.400818], "nonfinite": 0,
             "dead_fraction": None, "saturated_fraction": None}],
    })

    type: Literal["activations"]
    step: int = Field(description="the training step the batch belongs to")
    layers: list[ActivationLayerStats] = Field(description="one entry per layer, in the document's order")


class ParamGradient(WireModel):
    """The gradient of one parameter tensor."""

    name: str = Field(description='the PyTorch parameter name, e.g. "blocks.conv1.core.weight"')
    layer: str = Field(description="the document's layer it belongs to")
    norm: WireNumber = Field(description="L2 norm of the gradient")
    std: WireNumber = Field(description="standard deviation of the gradient's entries")


class OutputGradient(WireModel):
    """The gradient of the loss with respect to one layer's output."""

    layer: str = Field(description="the layer's name")
    norm: WireNumber = Field(description="L2 norm")
    std: WireNumber = Field(description="standard deviation of the entries")


class UpdateRatio(WireModel):
    """How much one optimizer step changed a parameter tensor."""

    name: str = Field(description="the PyTorch parameter name")
    layer: str = Field(description="the document's layer it belongs to")
    ratio: WireNumber = Field(description="||w_after - w_before|| / ||w_before||; healthy is about 1e-3")


class GradientsMsg(Envelope):
    """Gradient norms per parameter tensor and per layer output, and the update/weight ratio per parameter.

    Part of the live view ``layer_stats``, from the same training step as its ``activations``.
    """

    model_config = example({
        "type": "gradients", "run_id": "3f2a9c1e", "seq": 11, "t": 1.7153, "rate_hz": 5.0,
        "step": 25,
        "params": [{"name": "blocks.hidden.core.weight", "layer": "hidden", "norm": 0.0174335, "std": 0.00219384},
                   {"name": "blocks.hidden.core.bias", "layer": "hidden", "norm": 0.0806955, "std": 0.0144926}],
        "outputs": [{"layer": "out", "norm": 0.121144, "std": 0.0152628},
                    {"layer": "hidden", "norm": 0.0829826, "std": 0.00259447}],
        "update_ratios": [{"name": "blocks.hidden.core.weight", "layer": "hidden", "ratio": 0.0147393},
                          {"name": "blocks.hidden.core.bias", "layer": "hidden", "ratio": 0.015292}],
    })

    type: Literal["gradients"]
    step: int = Field(description="the training step")
    params: list[ParamGradient] = Field(description="every parameter tensor")
    outputs: list[OutputGradient] = Field(
        description="every layer's output, last layer first (the order backprop reaches them)"
    )
    update_ratios: list[UpdateRatio] = Field(description="every parameter tensor")


class WeightLayerStats(HistogramStats):
    """The distribution of one layer's weight tensor."""

    layer: str = Field(description="the layer's name")
    kind: str = Field(description="the layer kind")
    shape: Shape = Field(description="the weight tensor's shape")


class WeightsMsg(Envelope):
    """Weight histograms per layer: the live view ``weights``, and on demand."""

    model_config = example({
        "type": "weights", "run_id": "3f2a9c1e", "seq": 3, "t": 0.4152, "rate_hz": 1.0,
        "step": 0,
        "layers": [
            {"layer": "hidden", "kind": "linear", "shape": [32, 2], "mean": -0.0155044, "std": 0.218754, "min": -0.633824,
             "max": 0.473104, "hist": [1, 1, 12, 50], "edges": [-0.633824, 0.473104], "nonfinite": 0},
            {"layer": "out", "kind": "linear", "shape": [2, 32], "mean": -0.00718608, "std": 0.0978644, "min": -0.159534,
             "max": 0.174874, "hist": [4, 3, 40, 17], "edges": [-0.159534, 0.174874], "nonfinite": 0}],
    })

    type: Literal["weights"]
    step: int = Field(description="the training step")
    layers: list[WeightLayerStats] = Field(description="every layer with a weight, in the document's order")


class FiltersMsg(Envelope):
    """A conv layer's filters as one grid image: the live view ``filters``, and on demand.

    Pixel 128 is weight 0; 255 and 1 are +-``scale``. The scale is fixed per run and layer
    (1.5 x the first max |w|), so change over time is visible rather than rescaled away.
    """

    model_config = example({
        "type": "filters", "run_id": "3f2a9c1e", "seq": 4, "t": 2.6388, "rate_hz": 1.0,
        "step": 0, "layer": "conv1", "rgb": False, "scale": 0.299258, "n": 6, "cols": 1, "tile": [5, 5],
        "tiles": [[0, 0], [1, 0], [2, 0], [3, 0], [4, 0], [5, 0]], "max_abs": 0.199506,
        "grid": {"w": 5, "h": 35, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAAAUAAAAj..."},
    })

    type: Literal["filters"]
    step: int = Field(description="the training step")
    layer: str = Field(description="the conv layer's name")
    rgb: bool = Field(description="tiles are colour (a first layer on RGB input): one tile per filter")
    scale: WireNumber = Field(description="the weight that pixel 255 stands for (1 stands for -scale)")
    n: int = Field(description="number of tiles")
    cols: int = Field(description="tiles per grid row")
    tile: tuple[int, int] = Field(description="[h, w] of one tile in pixels; tiles are 1 px apart")
    tiles: list[tuple[int, Optional[int]]] = Field(
        description="[out_channel, in_channel] of each tile, in grid order; in_channel null for colour tiles"
    )
    max_abs: WireNumber = Field(description="the largest |weight| in the whole layer")
    grid: Image = Field(description="the tiles on a mid-grey background")


class FeatureMapLayer(WireModel):
    """One layer's output for the example: a grid of channel images, or raw values for a flat layer."""

    layer: str = Field(description="the layer's name")
    kind: str = Field(description="the layer kind")
    shape: Shape = Field(description="the full output shape")
    lo: float = Field(description="the value grey 0 stands for")
    hi: float = Field(description="the value grey 255 stands for")
    grid: Optional[Image] = Field(
        description="spatial layers: the first 64 channels, average-pooled to at most 64 px a side; null for flat layers"
    )
    values: Optional[list[WireNumber]] = Field(
        description="flat layers: the first 4096 raw values; null for spatial layers"
    )
    cols: Optional[int] = Field(description="tiles per grid row; null for flat layers")
    channels: int = omittable("spatial layers: channels shown in the grid")
    tile: tuple[int, int] = omittable("spatial layers: [h, w] of one tile in pixels; tiles are 1 px apart")


class FeatureMapsMsg(Envelope):
    """Every layer's output for validation example ``index``: the live view ``feature_maps``, and on demand."""

    model_config = example({
        "type": "feature_maps", "run_id": "3f2a9c1e", "seq": 19, "t": 2.6389, "rate_hz": 1.0,
        "step": 30, "index": 3, "label": 1,
        "input": {"w": 28, "h": 28, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."},
        "layers": [
            {"layer": "conv1", "kind": "conv2d", "shape": [6, 28, 28], "lo": 0.0, "hi": 5.11331,
             "grid": {"w": 86, "h": 57, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAAFYAAAA5..."}, "values": None, "cols": 3,
             "channels": 6, "tile": [28, 28]},
            {"layer": "fc3", "kind": "linear", "shape": [10], "lo": -4.20117, "hi": 6.03419, "grid": None,
             "values": [-1.2011, 6.03419, 0.2217, -4.20117, 0.5, 1.25, -0.75, 2.5, -2.0, 0.125], "cols": None}],
    })

    type: Literal["feature_maps"]
    step: int = Field(description="the training step")
    index: int = Field(description="the validation example")
    label: int = Field(description="its true class")
    input: Optional[Image] = Field(description="the example as an image; null for non-image data")
    layers: list[FeatureMapLayer] = Field(description="every layer that ran, in the document's order")


class SaliencyMsg(Envelope):
    """Input-gradient saliency for validation example ``index`` and class ``target``.

    The live view ``saliency``, and on demand. ``map`` is grey, 255 = most salient, at input
    resolution; draw it over ``input``.
    """

    model_config = example({
        "type": "saliency", "run_id": "3f2a9c1e", "seq": 20, "t": 2.6389, "rate_hz": 1.0,
        "step": 30, "index": 3, "target": 2, "predicted": 2, "smoothgrad": False,
        "input": {"w": 28, "h": 28, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."},
        "map": {"w": 28, "h": 28, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."},
    })

    type: Literal["saliency"]
    step: int = Field(description="the training step")
    index: int = Field(description="the validation example")
    target: int = Field(description="the class explained (the predicted one unless the command named a class)")
    predicted: int = Field(description="the class the network predicts")
    smoothgrad: bool = Field(description="averaged over 16 noisy copies of the input (SmoothGrad)")
    input: Image = Field(description="the example")
    map: Image = Field(description="grey, 255 = most salient")


class GradcamMsg(Envelope):
    """Grad-CAM for validation example ``index``: the live view ``gradcam``, and on demand.

    Class ``target`` (default: predicted) at conv layer ``layer`` (default: the last conv layer).
    ``map`` is grey in [0, 255] at input resolution.
    """

    model_config = example({
        "type": "gradcam", "run_id": "3f2a9c1e", "seq": 21, "t": 2.6389, "rate_hz": 1.0,
        "step": 30, "index": 3, "layer": "conv2", "target": 2, "predicted": 2, "probs": None,
        "input": {"w": 28, "h": 28, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."},
        "map": {"w": 28, "h": 28, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."},
    })

    type: Literal["gradcam"]
    step: int = Field(description="the training step")
    index: int = Field(description="the validation example")
    layer: str = Field(description="the conv layer whose activations are weighted")
    target: int = Field(description="the class explained")
    predicted: int = Field(description="the class the network predicts")
    probs: Optional[list[float]] = Field(description="class probabilities for the example, when sent; else null")
    input: Image = Field(description="the example")
    map: Image = Field(description="grey, 255 = most important for the target class")


class AttentionMask(WireModel):
    """The mask one attention layer applied to the example."""

    layer: str = Field(description="the attention layer's name")
    kind: Literal["channel", "spatial"] = Field(
        description="channel: squeeze-and-excitation; spatial: spatial attention"
    )
    values: Optional[list[float]] = Field(description="channel: one weight in [0, 1] per channel; null for spatial")
    map: Optional[Image] = Field(description="spatial: grey map at input resolution, 255 = weight 1; null for channel")


class AttentionMsg(Envelope):
    """The masks of squeeze-and-excitation and spatial-attention layers for validation example ``index``.

    The live view ``attention`` (networks with such layers only), and on demand.
    """

    model_config = example({
        "type": "attention", "run_id": "3f2a9c1e", "seq": 16, "t": 5.6187, "rate_hz": 1.0,
        "step": 12, "index": 0,
        "input": {"w": 28, "h": 28, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."},
        "masks": [{"layer": "se", "kind": "channel", "values": [0.423362, 0.480909, 0.51, 0.62], "map": None},
                  {"layer": "spatial", "kind": "spatial", "values": None,
                   "map": {"w": 28, "h": 28, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."}}],
    })

    type: Literal["attention"]
    step: int = Field(description="the training step")
    index: int = Field(description="the validation example")
    input: Image = Field(description="the example")
    masks: list[AttentionMask] = Field(description="one per attention layer, in the document's order")


class NeuronMap(WireModel):
    """One hidden unit's output over the plane."""

    layer: str = Field(description="the hidden layer")
    unit: int = Field(description="the unit's index in the layer")
    lo: WireNumber = Field(description="its smallest output on the grid")
    hi: WireNumber = Field(description="its largest output on the grid")
    map: Image = Field(description="grey on a symmetric scale: 128 = 0, 255 = +max |output|, 0 = -max |output|")


class BoundaryMsg(Envelope):
    """2D data: the decision regions over the plane and each hidden unit's output as a heat map.

    The live view ``boundary``, and on demand. Images are ``resolution`` x ``resolution`` cells,
    row 0 at the top (y1).
    """

    model_config = example({
        "type": "boundary", "run_id": "3f2a9c1e", "seq": 4, "t": 0.4152, "rate_hz": 20.0,
        "step": 0, "extent": [-1.0566, 1.10865, -1.12, 1.0412], "resolution": 64,
        "probs": {"w": 64, "h": 64, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAAEAAAABA..."},
        "predicted": {"w": 64, "h": 64, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAAEAAAABA..."},
        "neurons": [{"layer": "hidden", "unit": 0, "lo": -0.409693, "hi": 0.84632,
                     "map": {"w": 64, "h": 64, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAAEAAAABA..."}},
                    {"layer": "hidden", "unit": 1, "lo": -0.324172, "hi": 0.156777,
                     "map": {"w": 64, "h": 64, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAAEAAAABA..."}}],
        "points": [[0.133998, 0.125522, 0], [-0.0976266, -1.04756, 1]],
    })

    type: Literal["boundary"]
    step: int = Field(description="the training step")
    extent: tuple[float, float, float, float] = Field(description="[x0, x1, y0, y1]: the plane shown")
    resolution: int = Field(description="cells per side of every map")
    probs: Optional[Image] = Field(description="grey = P(class 1) for two classes; null for more classes")
    predicted: Image = Field(description="grey: the predicted class index per cell")
    neurons: list[NeuronMap] = Field(description="hidden units of flat layers (the first ones of each layer)")
    points: list[tuple[float, float, int]] = Field(description="validation points to draw on top: [x, y, label]")


class ConfusionMsg(Envelope):
    """The confusion matrix on the validation split.

    The live view ``evaluation`` (after each evaluation, with ``misclassified``), and on demand.
    """

    model_config = example({
        "type": "confusion", "run_id": "3f2a9c1e", "seq": 17, "t": 4.7153, "rate_hz": 1.0,
        "step": 30, "classes": ["arm 1", "arm 2"], "matrix": [[29, 31], [20, 40]],
        "per_class_accuracy": [0.483333, 0.666667], "accuracy": 0.575,
        "cells": {"0,0": [0, 2, 5], "0,1": [4, 8], "1,0": [9, 13], "1,1": [1, 3, 6]},
    })

    type: Literal["confusion"]
    step: int = Field(description="the training step")
    classes: list[str] = Field(description="class names")
    matrix: list[list[int]] = Field(description="matrix[true][predicted]: example counts")
    per_class_accuracy: list[Optional[float]] = Field(description="per true class; null for a class with no example")
    accuracy: float = Field(description="overall validation accuracy")
    cells: dict[str, list[int]] = Field(
        description='"t,p" -> the first (up to 16) validation example indices of each non-empty cell'
    )


class Mistake(WireModel):
    """One misclassified validation example."""

    index: int = Field(description="the validation example")
    true: int = Field(description="its true class")
    predicted: int = Field(description="the class the network chose")
    confidence: float = Field(description="the probability given to the wrong class")
    image: Optional[Image] = Field(description="the example as an image; null for non-image data")


class MisclassifiedMsg(Envelope):
    """The most confidently misclassified validation examples: part of the live view ``evaluation``, and on demand."""

    model_config = example({
        "type": "misclassified", "run_id": "3f2a9c1e", "seq": 18, "t": 4.7153, "rate_hz": 1.0,
        "step": 30,
        "examples": [{"index": 108, "true": 0, "predicted": 1, "confidence": 0.69014, "image": None},
                     {"index": 104, "true": 0, "predicted": 1, "confidence": 0.685326, "image": None}],
    })

    type: Literal["misclassified"]
    step: int = Field(description="the training step")
    examples: list[Mistake] = Field(description="most confident first (at most 16)")


class PredictionMsg(Envelope):
    """Class probabilities for an input the client supplied (the ``predict`` command), e.g. a drawn digit."""

    model_config = example({
        "type": "prediction", "run_id": "3f2a9c1e", "seq": 40, "t": 9.5,
        "probs": [0.0195632, 0.480919, 0.499518], "predicted": 2, "classes": ["0", "1", "2"],
    })

    type: Literal["prediction"]
    probs: list[float] = Field(description="one probability per class")
    predicted: int = Field(description="the most probable class")
    classes: list[str] = Field(description="class names")


class TraceNode(WireModel):
    """One scalar of the unrolled computation."""

    id: str = Field(description='unique key, e.g. "hidden.w[1,0]"')
    label: str = Field(description='short display name, e.g. "w[1,0]"')
    op: str = Field(
        description="input, weight, bias, mul, add, sigmoid, tanh, relu, or the loss: mse, cross_entropy, bce_with_logits"
    )
    value: float = Field(description="its forward value")
    grad: float = Field(description="dL/d(node): what flows back into it")
    local_grads: dict[str, float] = Field(description="input id -> d(node)/d(input), the local derivative here")
    inputs: list[str] = Field(description="ids of the nodes it is computed from (empty for inputs and parameters)")


class TraceParam(WireModel):
    """One gradient-descent step on one scalar parameter: new_value = value - lr * grad."""

    id: str = Field(description="the parameter's node id")
    name: str = Field(description='the PyTorch name and index, e.g. "hidden.weight[1, 0]"')
    value: float = Field(description="before the step")
    grad: float = Field(description="dL/d(parameter)")
    new_value: float = Field(description="after the step")


class BackpropTraceMsg(Envelope):
    """One step of backprop on a tiny MLP as a scalar computational graph (on demand).

    Every node's forward ``value``, its upstream gradient ``grad`` (dL/dnode), its
    ``local_grads`` (dnode/dinput), and every parameter's update. Only for networks of linear
    layers with elementwise activations and at most about 50 nodes.
    """

    model_config = example({
        "type": "backprop_trace", "run_id": "3f2a9c1e", "seq": 23, "t": 0.9172,
        "nodes": [{"id": "x0", "label": "x0", "op": "input", "value": 0.607233, "grad": -0.0188264, "local_grads": {},
                   "inputs": []},
                  {"id": "hidden.m[0,0]", "label": "w·x", "op": "mul", "value": 0.747062, "grad": -0.010384,
                   "local_grads": {"x0": 1.23027, "hidden.w[0,0]": 0.607233}, "inputs": ["x0", "hidden.w[0,0]"]}],
        "params": [{"id": "hidden.w[0,0]", "name": "hidden.weight[0, 0]", "value": 1.23027, "grad": -0.010384,
                    "new_value": 1.25104}],
        "loss": 0.121279, "loss_kind": "mse", "lr": 2.0,
    })

    type: Literal["backprop_trace"]
    nodes: list[TraceNode] = Field(
        description="the graph in topological order: inputs and parameters first, the loss last"
    )
    params: list[TraceParam] = Field(description="every scalar parameter's update")
    loss: float = Field(description="the loss on the example")
    loss_kind: str = Field(description="mse or cross_entropy")
    lr: float = Field(description="the learning rate of the shown update")


GradCheckVerdict = named_type(
    "GradCheckVerdict",
    Literal["great", "ok", "suspicious", "wrong", "kink"],
    "great (< 1e-7), ok (< 1e-4), suspicious, wrong (> 1e-2), or kink: a mismatch that a "
    "non-differentiable point within the finite-difference step explains.",
)


class GradCheckEntry(WireModel):
    """One checked scalar parameter."""

    param: str = Field(description="the PyTorch parameter name")
    index: list[int] = Field(description="the scalar's position in the tensor")
    analytic: WireNumber = Field(description="backprop's dL/dtheta")
    numeric: WireNumber = Field(description="the central finite difference")
    rel_error: WireNumber = Field(description="|a - n| / max(|a|, |n|); inf when either is not finite")
    verdict: GradCheckVerdict = Field(description="how good the match is")


class GradientCheckMsg(Envelope):
    """Autograd against central finite differences in float64 on sampled parameters (on demand)."""

    model_config = example({
        "type": "gradient_check", "run_id": "3f2a9c1e", "seq": 24, "t": 0.9172,
        "entries": [{"param": "blocks.hidden.core.weight", "index": [0, 0], "analytic": 0.004775, "numeric": 0.004775,
                     "rel_error": 1.57837e-10, "verdict": "great"},
                    {"param": "blocks.hidden.core.weight", "index": [0, 1], "analytic": -0.000819191,
                     "numeric": -0.000819191, "rel_error": 1.63589e-09, "verdict": "great"}],
        "max_rel_error": 1.81414e-09, "passed": True, "verdict": "great", "kinks": 0, "eps": 1e-05,
    })

    type: Literal["gradient_check"]
    entries: list[GradCheckEntry] = Field(description="every checked scalar")
    max_rel_error: WireNumber = Field(description="the largest relative error that is not a kink")
    passed: bool = Field(description="max_rel_error is ok (< 1e-4)")
    verdict: GradCheckVerdict = Field(description="the verdict of max_rel_error")
    kinks: int = Field(description="entries excused as kinks")
    eps: float = Field(description="the finite-difference step")


class HintMsg(Envelope):
    """The training doctor: a plain-language diagnosis with its evidence and the chart that shows it.

    Each ``code`` is sent at most once per run.
    """

    model_config = example({
        "type": "hint", "run_id": "3f2a9c1e", "seq": 9, "t": 0.424,
        "code": "lr_too_high", "severity": "error",
        "message": "The loss exploded at step 10: the steps overshoot and the weights blow up. Lower the learning rate "
                   "(1e+06) by 10x; gradient clipping or batch normalization also help.",
        "evidence": {"series": "train_loss", "value": 2768.44, "peak_step": 10, "lr": 1000000.0, "stop_reason": "exploded"},
        "chart": "loss",
    })

    type: Literal["hint"]
    code: HintCode = Field(description="what the doctor found")
    severity: HintSeverity = Field(description="how bad it is")
    message: str = Field(description="what is seen, the likely cause and what to try")
    evidence: dict[str, Any] = Field(
        description="the numbers behind it: always `series` (what was measured) and `value`, plus `threshold`, "
        "`layer`, `step`, ... where they apply; numbers follow WireNumber"
    )
    chart: HintChart = Field(description="the chart that shows the symptom")


# ---------------------------------------------------------------------------
# Lessons (issue 11): fooling the network (lesson 20), the optimizer race (lesson 9)
# ---------------------------------------------------------------------------


class ClassPrediction(WireModel):
    """What the network says about one image: its class, how sure it is, and every class's probability."""

    predicted: int = Field(description="the predicted class")
    confidence: float = Field(description="the predicted class's probability, in [0, 1]")
    probs: list[float] = Field(description="every class's probability (softmax; [1 - p, p] for a one-logit network)")


class FgsmMsg(Envelope):
    """Fooling the network (on demand): the fast gradient sign method on validation example ``index``.

    Every raw pixel (in [0, 1]) moves by at most ``epsilon``, in the direction that raises the
    true class's loss (untargeted) or lowers the ``target`` class's loss (targeted), then is
    clipped back to [0, 1]. ``perturbation`` is amplified to be seen: grey 128 is unchanged,
    255 is +epsilon and 0 is -epsilon.
    """

    model_config = example({
        "type": "fgsm", "run_id": "3f2a9c1e", "seq": 31, "t": 9.52,
        "step": 186, "index": 0, "label": 7, "target": None, "epsilon": 0.1,
        "original": {"w": 28, "h": 28, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."},
        "perturbation": {"w": 28, "h": 28, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."},
        "adversarial": {"w": 28, "h": 28, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."},
        "original_prediction": {"predicted": 7, "confidence": 0.993412,
                                "probs": [0.0001, 0.0002, 0.0031, 0.0004, 0.0001, 0.0002, 0.0, 0.993412, 0.0003, 0.0021]},
        "adversarial_prediction": {"predicted": 3, "confidence": 0.61204,
                                   "probs": [0.0012, 0.0041, 0.1203, 0.61204, 0.0007, 0.0119, 0.0003, 0.2316, 0.0102,
                                             0.0077]},
        "fooled": True,
    })

    type: Literal["fgsm"]
    step: int = Field(description="the training step of the weights attacked")
    index: int = Field(description="the validation example")
    label: int = Field(description="its true class")
    target: Optional[int] = Field(description="the class a targeted attack pushes towards; null: untargeted")
    epsilon: float = Field(description="the most any raw pixel moved (pixels in [0, 1])")
    original: Image = Field(description="the clean image")
    perturbation: Image = Field(description="adversarial - original, amplified: 128 unchanged, 255 +epsilon, 0 -epsilon")
    adversarial: Image = Field(description="the attacked image")
    original_prediction: ClassPrediction = Field(description="the network on the clean image")
    adversarial_prediction: ClassPrediction = Field(description="the network on the attacked image")
    fooled: bool = Field(
        description="untargeted: the prediction is no longer the true class; targeted: it is now the target"
    )


class FgsmSweepMsg(Envelope):
    """Fooling the network in bulk (on demand): validation accuracy under FGSM at each epsilon.

    The same examples (the first ``n`` of the validation split) are attacked at every epsilon;
    epsilon 0 is the clean accuracy.
    """

    model_config = example({
        "type": "fgsm_sweep", "run_id": "3f2a9c1e", "seq": 32, "t": 10.1,
        "step": 186, "n": 1000, "epsilons": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3],
        "accuracy": [0.961, 0.711, 0.262, 0.061, 0.011, 0.002, 0.0],
    })

    type: Literal["fgsm_sweep"]
    step: int = Field(description="the training step of the weights attacked")
    n: int = Field(description="validation examples attacked")
    epsilons: list[float] = Field(description="the attack budgets, increasing from 0")
    accuracy: list[float] = Field(description="accuracy in [0, 1] under attack at each epsilon")


class RacerPath(WireModel):
    """One optimizer's path on the test function, step by step from the common start."""

    optimizer: str = Field(description="sgd, momentum, nesterov, adagrad, rmsprop, adam or lbfgs")
    lr: float = Field(description="its learning rate (L-BFGS: the scale of its line-searched step)")
    points: list[tuple[float, float]] = Field(description="[x, y] at the start and after each step")
    losses: list[float] = Field(description="the function's value at each point")
    evaluations: int = Field(description="evaluations of the function and its gradient (L-BFGS: several per step)")
    diverged_at: Optional[int] = Field(
        description="the step after which the point flew off or the value stopped being finite (the path ends "
        "there); null when it stayed"
    )


class OptimizerRaceMsg(Envelope):
    """The optimizer race (on demand): every optimizer's path on a 2D test function, from one start.

    ``surface`` is the function over ``extent`` as a grey image (row 0 at the top, y1), log-scaled:
    255 is the highest value, 0 the minimum. Draw each racer's ``points`` over it step by step.
    """

    model_config = example({
        "type": "optimizer_race", "run_id": "3f2a9c1e", "seq": 40, "t": 12.5,
        "function": "valley", "title": "A long narrow valley", "formula": "0.05 x² + 5 y²",
        "extent": [-10.0, 10.0, -2.5, 2.5], "start": [-9.0, 1.5], "minima": [[0.0, 0.0]], "min_value": 0.0, "steps": 2,
        "surface": {"w": 128, "h": 128, "c": 1, "png": "iVBORw0KGgoAAAANSUhEUgAAAIAAAACA..."},
        "racers": [{"optimizer": "sgd", "lr": 0.18, "points": [[-9.0, 1.5], [-8.838, -1.2], [-8.67892, 0.96]],
                    "losses": [15.3, 11.1055, 8.37418], "evaluations": 2, "diverged_at": None},
                   {"optimizer": "adam", "lr": 0.5, "points": [[-9.0, 1.5], [-8.5, 1.0], [-8.00095, 0.514824]],
                    "losses": [15.3, 8.6125, 4.52598], "evaluations": 2, "diverged_at": None}],
    })

    type: Literal["optimizer_race"]
    function: str = Field(description="the test function: valley, rosenbrock or saddle")
    title: str = Field(description="its name for people")
    formula: str = Field(description="f(x, y), as the page writes it")
    extent: tuple[float, float, float, float] = Field(description="[x0, x1, y0, y1]: the region drawn")
    start: tuple[float, float] = Field(description="[x, y] where every racer starts")
    minima: list[tuple[float, float]] = Field(description="[x, y] of each global minimum")
    min_value: float = omittable("f at the global minima (the value a racer that arrived reaches)")
    steps: int = Field(description="steps each racer was given")
    surface: Image = Field(description="log(1 + f - min) over the extent, grey, 255 = highest")
    racers: list[RacerPath] = Field(description="one path per optimizer")


# Every server -> page message, in the order PROTOCOL.md documents them.
SERVER_MESSAGES: tuple[type[WireModel], ...] = (
    SummaryMsg, StatusMsg, MetricsMsg, HyperparamsMsg, FinalMsg, ErrorMsg, PongMsg,
    ActivationsMsg, GradientsMsg, WeightsMsg, FiltersMsg, FeatureMapsMsg, SaliencyMsg, GradcamMsg, AttentionMsg,
    BoundaryMsg, ConfusionMsg, MisclassifiedMsg, PredictionMsg, BackpropTraceMsg, GradientCheckMsg, HintMsg,
    FgsmMsg, FgsmSweepMsg, OptimizerRaceMsg,
)


def _tag(model: type[BaseModel], field: str) -> str:
    """The literal value of a model's discriminator field (``type`` or ``cmd``)."""
    (value,) = model.model_fields[field].annotation.__args__  # type: ignore[union-attr]
    return value


# type -> model
MESSAGE_MODELS: dict[str, type[WireModel]] = {_tag(m, "type"): m for m in SERVER_MESSAGES}


# ---------------------------------------------------------------------------
# Page -> server commands
# ---------------------------------------------------------------------------


class CommandBase(WireModel):
    """Fields every command may carry."""

    id: Union[str, int] = omittable(
        "any id the client chooses; the replies it causes echo it as `request_id` "
        "(errors, pong, and the first `status queued` of a started run)"
    )


class StartCommand(CommandBase):
    """Validate an experiment, queue it and start it when a slot is free.

    Replies ``status queued`` (seq 1, with ``request_id``), then the run's stream; an invalid
    document gets ``error invalid_experiment`` with every problem.
    """

    model_config = example({"cmd": "start", "id": 7, "experiment": {
        "name": "tiny", "data": {"name": "spiral"},
        "network": {"layers": [{"kind": "linear", "name": "hidden", "out_features": 16, "activation": "tanh"},
                               {"kind": "linear", "name": "out", "out_features": 2}]},
    }})

    cmd: Literal["start"]
    experiment: Experiment = Field(description="the experiment document, checked as POST /api/validate checks it")
    paused: bool = Field(False, description="start paused: the run opens (its summary and a step-0 frame of every "
                         "watched view) and waits at step 0 for `step` or `resume` (the Step button before any run)")


class RunCommand(CommandBase):
    """A command about one run of this session."""

    run_id: str = Field(description="the run")


class PauseCommand(RunCommand):
    """Pause training; the server sends a frame of every watched view at once."""

    model_config = example({"cmd": "pause", "run_id": "3f2a9c1e"})
    cmd: Literal["pause"]


class ResumeCommand(RunCommand):
    """Resume a paused run."""

    model_config = example({"cmd": "resume", "run_id": "3f2a9c1e"})
    cmd: Literal["resume"]


class StepCommand(RunCommand):
    """Pause (if running) and train exactly one step; a frame of every watched view follows."""

    model_config = example({"cmd": "step", "run_id": "3f2a9c1e"})
    cmd: Literal["step"]


class StopCommand(RunCommand):
    """End the run (or take it out of the queue); replies ``final`` and ``status stopped``."""

    model_config = example({"cmd": "stop", "run_id": "3f2a9c1e"})
    cmd: Literal["stop"]


class SetCommand(RunCommand):
    """Change hyperparameters live (at least one); replies ``hyperparams`` with the values now in force."""

    model_config = example({"cmd": "set", "run_id": "3f2a9c1e", "lr": 0.01, "id": "s1"})

    cmd: Literal["set"]
    lr: float = omittable("new base learning rate")
    momentum: float = omittable("momentum, or beta1 of Adam/AdamW")
    weight_decay: float = omittable("l2 coefficient")
    dropout: float = omittable("p of every dropout layer")


class ProbeCommand(RunCommand):
    """Run one probe now; its message goes to every subscriber of the run.

    Works after the run has finished too, while its model is still loaded.
    """

    model_config = example({"cmd": "probe", "run_id": "3f2a9c1e", "probe": "saliency", "index": 3, "smoothgrad": True})

    cmd: Literal["probe"]
    probe: ProbeKind = Field(description="which probe")
    index: int = omittable(
        "the validation example (feature_maps, saliency, gradcam, attention, backprop_trace, fgsm); default 0"
    )
    class_: int = omittable(
        "the class to explain (saliency, gradcam; default: the predicted one), or to push towards (fgsm; default: "
        "none, an untargeted attack)", alias="class"
    )
    layer: str = omittable("the conv layer (gradcam, filters); default: the last (gradcam) or first (filters)")
    smoothgrad: bool = omittable("saliency: average over 16 noisy copies")
    epsilon: float = omittable(
        "fgsm: the most a raw pixel (in [0, 1]) may move, default 0.1; fgsm_sweep: the largest epsilon, default 0.3"
    )
    function: str = omittable("optimizer_race: the 2D test function, valley, rosenbrock or saddle; default valley")
    steps: int = omittable("optimizer_race: steps per optimizer; default: the function's own")
    lr: float = omittable("optimizer_race: one learning rate for every optimizer; default: each its own")


class PredictCommand(RunCommand):
    """Classify an input the user made (a drawn digit, a point); replies ``prediction``."""

    model_config = example({"cmd": "predict", "run_id": "3f2a9c1e", "input": [0.25, -0.5]})

    cmd: Literal["predict"]
    input: Union[list[float], list[list[float]], list[list[list[float]]]] = Field(
        description="raw values of one example, flat or nested (an image as H x W rows in [0, 1]); "
        "as many values as the network's input has"
    )


class SubscribeCommand(RunCommand):
    """Follow a run: replay what was missed, then stream live.

    The replay is every non-image message after ``after_seq`` and the newest image of each type. A
    run no longer in memory replays its stored summary, metric history and final, then a ``status``
    without seq.
    """

    model_config = example({"cmd": "subscribe", "run_id": "3f2a9c1e", "after_seq": 57})

    cmd: Literal["subscribe"]
    after_seq: int = omittable("the last seq this client received; default 0 (everything)")


class UnsubscribeCommand(RunCommand):
    """Stop following a run (the run goes on)."""

    model_config = example({"cmd": "unsubscribe", "run_id": "3f2a9c1e"})
    cmd: Literal["unsubscribe"]


class PingCommand(CommandBase):
    """Replies ``pong`` to this client only."""

    model_config = example({"cmd": "ping", "id": "p1"})
    cmd: Literal["ping"]


class ViewsCommand(RunCommand):
    """Which live views this connection is looking at for a run (its open tabs), with each view's arguments.

    The server computes only the views some subscriber watches, and sends them to every
    subscriber. A connection that never sends ``views`` watches the defaults. Send it again
    whenever the open tab or a view's example, layer or class changes.
    """

    model_config = example({"cmd": "views", "run_id": "3f2a9c1e",
                            "views": {"boundary": {}, "layer_stats": {}, "feature_maps": {"index": 3}}})

    cmd: Literal["views"]
    views: dict[LiveViewName, dict[str, Any]] = Field(
        description="view name -> its arguments, e.g. {} or {index: 3}; the views not named are not watched"
    )


class SpeedCommand(RunCommand):
    """Limit the training speed; replies ``hyperparams`` whose ``values`` has ``steps_per_s``."""

    model_config = example({"cmd": "speed", "run_id": "3f2a9c1e", "steps_per_s": 10})

    cmd: Literal["speed"]
    steps_per_s: Optional[float] = Field(
        description="at most this many optimizer steps per second; null = as fast as the machine goes"
    )


# Every page -> server command, in the order PROTOCOL.md documents them.
CLIENT_COMMANDS: tuple[type[CommandBase], ...] = (
    StartCommand, PauseCommand, ResumeCommand, StepCommand, StopCommand, SetCommand, ProbeCommand, PredictCommand,
    SubscribeCommand, UnsubscribeCommand, PingCommand, ViewsCommand, SpeedCommand,
)

# cmd -> model
COMMAND_MODELS: dict[str, type[CommandBase]] = {_tag(m, "cmd"): m for m in CLIENT_COMMANDS}


# ---------------------------------------------------------------------------
# Validation (for tests and tools; the server does not validate what it sends)
# ---------------------------------------------------------------------------


class UnknownMessageType(ValueError):
    """A message whose ``type`` has no model here: add one (and regenerate) before sending it."""


def validate_message(message: dict[str, Any]) -> WireModel:
    """Check one message as the page would receive it: JSON text, strictly typed, no unknown field.

    Raises ``UnknownMessageType`` for a type without a model, ``ValueError`` for a raw NaN/inf
    float (JSON cannot carry it; protocol.clean_float makes it a string), and
    ``pydantic.ValidationError`` naming the offending field otherwise.
    """
    kind = message.get("type")
    model = MESSAGE_MODELS.get(kind)  # type: ignore[arg-type]
    if model is None:
        raise UnknownMessageType(
            f"message type {kind!r} has no model in server/messages.py; add one to SERVER_MESSAGES and run "
            "`npm run gen-types` in frontend/"
        )
    text = json.dumps(message, allow_nan=False)
    return model.model_validate_json(text, strict=True)


def validate_command(command: dict[str, Any]) -> CommandBase:
    """Check one page -> server command against its model (strict, no unknown field)."""
    name = command.get("cmd")
    model = COMMAND_MODELS.get(name)  # type: ignore[arg-type]
    if model is None:
        raise ValueError(f"unknown command {name!r}; the commands are {', '.join(COMMAND_MODELS)}")
    return model.model_validate_json(json.dumps(command, allow_nan=False), strict=True)
