"""Experiment -> one standalone, readable PyTorch script that trains the network as dlplay does.

The script is for a student to read and run without dlplay: an ``nn.Module``
written out layer by layer, the data loading (the built-in generators and the
split are inlined from ``server/datasets`` with ``inspect.getsource``, so they
cannot drift from what dlplay runs), the optimizer, the schedule and the loop,
all exactly as configured. Only the pieces the experiment uses are written.

Exactness. With the same seed the script reproduces dlplay's per-step losses on
the CPU (tests/export check the first 50 to 1e-5; they agree to the bit). What
that takes, mirrored from the trainer and the builder:

* weights: ``torch.manual_seed(seed)``, then the modules constructed in document
  order, each layer's initializers applied right after its module (the builder
  draws them in that order inside ``fork_rng``); then ``torch.manual_seed(seed)``
  again, because the builder's ``fork_rng`` leaves the global stream where the
  trainer's seed put it, and dropout draws from it;
* shuffling: a ``torch.Generator`` seeded with the seed, one ``randperm`` per
  epoch, the last partial batch dropped; augmentation draws from it too;
* the loss, l1/l2 penalty, clipping, warm-up and schedule formulas of
  ``losses.py``, ``trainer.py`` and ``schedules.py``.

:func:`script_sections` returns the script as titled sections, which the notebook
exporter turns into markdown and code cells; :func:`pytorch_script` joins them.
"""

from __future__ import annotations

import ast
import inspect
import json
import keyword
import math
import re
import textwrap
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import ModuleType

from torch import nn

from server import schemas
from server.builder import INPUT, GraphModel, NetworkSummary, build_model
from server.datasets import DATASETS, describe_data
from server.datasets import augment as augment_module
from server.datasets import base as data_base
from server.datasets import generated as generated_sets
from server.datasets import images as image_sets
from server.datasets import synthetic2d
from server.datasets.uploads import UPLOAD_PREFIX
from server.initializers import compute_fans
from server.layers import Maxout, SpatialAttention, SqueezeExcite
from server.losses import build_objective

EVAL_BATCH = 1024  # examples per forward pass in evaluate() (the trainer's EVAL_BATCH)
LSUV_BATCH = 512  # training examples LSUV measures on (the trainer's LSUV_BATCH)

# Names Net's code reads (forward's input, the modules and helpers it calls); a layer called one of these,
# or like an attribute every nn.Module has (train, eval, forward, ...), gets a trailing "_".
_TAKEN = {
    "x", "self", "torch", "nn", "F", "np", "math", "sign", "maxout", "Maxout", "SqueezeExcite", "SpatialAttention",
    "SignStep", "Net",
} | set(dir(nn.Module))


@dataclass
class Section:
    """One block of the script: a title, the explanation a notebook shows above it, and its code."""

    key: str
    title: str
    markdown: str
    code: str


# ---------------------------------------------------------------------------
# Names: layer name -> Python attribute
# ---------------------------------------------------------------------------


def _identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    if not ident or ident[0].isdigit():
        ident = f"layer_{ident}"
    if keyword.iskeyword(ident) or ident in _TAKEN:
        ident += "_"
    return ident


def module_names(network: schemas.NetworkSpec) -> dict[str, tuple[str, str | None]]:
    """Layer name -> (attribute of the layer in the script's ``Net``, attribute of its PReLU or None).

    Attributes are Python identifiers (``block1.conv`` -> ``block1_conv``), unique, and
    never an ``nn.Module`` attribute (a layer named ``train`` becomes ``train_``). An
    ``activation`` layer's PReLU is the layer's own attribute.
    """
    used: set[str] = set()
    out: dict[str, tuple[str, str | None]] = {}

    def claim(base: str) -> str:
        candidate, k = base, 2
        while candidate in used:
            candidate, k = f"{base}_{k}", k + 1
        used.add(candidate)
        return candidate

    for layer in network.layers:
        attr = claim(_identifier(layer.name))
        act = getattr(layer, "activation", None)
        prelu = isinstance(act, schemas.PReLUAct) and layer.kind != "activation"
        out[layer.name] = (attr, claim(f"{attr}_act") if prelu else None)
    return out


def script_tensor_names(model: GraphModel) -> dict[str, str]:
    """GraphModel state-dict key -> the key of the same tensor in the exported script's ``Net``.

    ``blocks.conv1.core.weight`` -> ``conv1.weight``; a PReLU's ``blocks.h.act.weight`` ->
    ``h_act.weight`` (``h.weight`` for an ``activation`` layer).
    """
    specs = schemas.NetworkSpec(layers=[block.spec for block in model.blocks.values()])
    attrs = module_names(specs)
    out = {}
    for key in model.state_dict():
        layer = GraphModel.layer_of(key)
        rest = key.split(".", 2)[2]
        core, act = attrs[layer]
        if rest.startswith("act."):
            out[key] = f"{act or core}.{rest[4:]}"
        else:
            out[key] = f"{core}.{rest.removeprefix('core.')}"
    return out


# ---------------------------------------------------------------------------
# Inlining dlplay's own source
# ---------------------------------------------------------------------------


def _module_definitions(module: ModuleType) -> dict[str, tuple[int, str, set[str]]]:
    """Top-level functions, classes and single-name constants of ``module``: name -> (line, source, names used)."""
    source = inspect.getsource(module)
    lines = source.splitlines()
    tree = ast.parse(source)
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            name = node.name
            start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        elif (isinstance(node, (ast.Assign, ast.AnnAssign)) and len(getattr(node, "targets", [None])) == 1
              and isinstance(node.targets[0] if isinstance(node, ast.Assign) else node.target, ast.Name)):
            name = (node.targets[0] if isinstance(node, ast.Assign) else node.target).id
            start = node.lineno
        else:
            continue
        text = "\n".join(lines[start - 1: node.end_lineno])
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} - {name}
        out[name] = (start, text, used)
    return out


def _inline(roots: list[str], modules: list[ModuleType]) -> str:
    """The source of ``roots`` and everything they use from ``modules`` (transitively), in dependency order.

    Definitions come module by module, each module's in file order, so constants
    precede the functions that read them.
    """
    tables = [_module_definitions(m) for m in modules]
    wanted: list[set[str]] = [set() for _ in modules]
    todo = list(roots)
    while todo:
        name = todo.pop()
        for table, chosen in zip(tables, wanted):
            if name in table:
                if name not in chosen:
                    chosen.add(name)
                    todo.extend(table[name][2])
                break
    blocks = []
    for table, chosen in zip(tables, wanted):
        for _, text, _ in sorted(table[n] for n in chosen):
            blocks.append(text)
    return _join_defs(blocks)


def _join_defs(blocks: list[str]) -> str:
    """Constants one per line; a blank line pair around each function or class."""
    out: list[str] = []
    for text in blocks:
        is_def = text.lstrip().startswith(("def ", "class ", "@"))
        if out and (is_def or out[-1].lstrip().startswith(("def ", "class ", "@"))):
            out.append("\n\n" + text)
        else:
            out.append(text)
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------


def _lit(value) -> str:
    """A Python literal that round-trips exactly (floats by repr)."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(_lit(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(_lit(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # double quotes, like the rest of the file
    return repr(value)


def _pair(value) -> str:
    """A kernel/stride/padding as torch takes it: 3 for (3, 3), (3, 5) otherwise."""
    if isinstance(value, (tuple, list)):
        return str(value[0]) if value[0] == value[1] else f"({value[0]}, {value[1]})"
    return repr(value)


def _shape(shape) -> str:
    return "(N, " + ", ".join(str(s) for s in shape) + ")"


def _settings_line(name: str, value, comment: str = "") -> str:
    line = f"{name} = {_lit(value)}"
    return f"{line}  # {comment}" if comment else line


# ---------------------------------------------------------------------------
# The export context
# ---------------------------------------------------------------------------


@dataclass
class _Context:
    experiment: schemas.Experiment
    model: GraphModel
    summary: NetworkSummary
    shapes: dict[str, tuple[int, ...]]
    attrs: dict[str, tuple[str, str | None]]
    kind: str
    classes: list[str]
    run_id: str | None
    filename: str
    data_url: str | None = None  # where the server offers the MNIST-5k file (an export through the API)

    @property
    def train(self) -> schemas.TrainConfig:
        return self.experiment.train

    @property
    def data(self) -> schemas.DataSpec:
        return self.experiment.data

    @property
    def layers(self):
        return self.experiment.network.layers

    @property
    def num_outputs(self) -> int:
        return math.prod(self.summary.output_shape)

    @property
    def perceptron(self) -> bool:
        return self.train.optimizer.kind == "perceptron"

    @property
    def lbfgs(self) -> bool:
        return self.train.optimizer.kind == "lbfgs"

    @property
    def chain(self) -> bool:
        """Every layer reads exactly the one before it: the forward is a plain ``x = ...`` sequence."""
        previous = INPUT
        for info in self.summary.layers:
            if info.inputs != [previous]:
                return False
            previous = info.name
        return True

    @property
    def upload(self) -> bool:
        return self.data.name.startswith(UPLOAD_PREFIX)

    def uses(self, *kinds: str) -> bool:
        """True when a layer of one of ``kinds``, or an activation of one of them, appears in the network."""
        for layer in self.layers:
            act = getattr(layer, "activation", None)
            if layer.kind in kinds or (act is not None and act.kind in kinds):
                return True
        return False

    @property
    def dropout(self) -> bool:
        return any(layer.kind == "dropout" for layer in self.layers)

    @property
    def lsuv_layers(self) -> list:
        return [layer for layer in self.layers if isinstance(getattr(layer, "weight_init", None), schemas.LSUVInit)]

    @property
    def augment(self) -> schemas.AugmentSpec | None:
        a = self.data.augmentation
        return a if (a.hflip or a.crop_padding > 0 or a.rotate_degrees > 0 or a.noise_std > 0) else None

    @property
    def lr_moves(self) -> bool:
        """The LR changes step by step (a time-based schedule or warm-up), as the trainer's ``_lr_moves``."""
        return not isinstance(self.train.schedule, (schemas.ConstantSchedule, schemas.PlateauSchedule)) \
            or self.train.warmup_steps > 0


def _context(experiment: schemas.Experiment, run_id: str | None, uploads_dir: Path | None, filename: str) -> _Context:
    shape = describe_data(experiment.data, uploads_dir=uploads_dir)
    # Built (not trained) for the parameter shapes the initializer fans come from; limits are the server's business.
    model, summary = build_model(experiment.network, shape.input_shape, shape.num_classes,
                                 max_params=None, max_activation_bytes=None, seed=experiment.train.seed)
    shapes = {INPUT: tuple(summary.input_shape)} | {info.name: tuple(info.output_shape) for info in summary.layers}
    return _Context(experiment, model, summary, shapes, module_names(experiment.network), shape.kind,
                    list(shape.classes), run_id, filename)


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


def _header(ctx: _Context) -> Section:
    from server.config import version

    e = ctx.experiment
    source = f"run {ctx.run_id}" if ctx.run_id else "an experiment document"
    needs = ["Python 3.10+", "PyTorch", "NumPy"]
    if ctx.data.name in ("digits", "photo_patches"):
        needs.append("scikit-learn" + (" and Pillow" if ctx.data.name == "photo_patches" else ""))
    if ctx.train.init_from is not None:
        needs.append("safetensors (for --init-from)")
    lines = [e.name, ""]
    if e.description:
        lines += textwrap.wrap(e.description, 92) + [""]
    lines += textwrap.wrap(
        f"Exported from dlplay {version()} on {date.today().isoformat()} ({source}) as a standalone PyTorch "
        "script: the network layer by layer, its data, the optimizer, the schedule and the training loop, "
        "exactly as configured. With the same seed it reproduces dlplay's loss curve on the CPU.", 92)
    lines += [
        "",
        f"    python {ctx.filename}                    train as configured",
        f"    python {ctx.filename} --steps 50         stop after 50 steps",
        f"    python {ctx.filename} --history h.json   also save the curves as JSON",
        "",
        f"Needs {', '.join(needs[:-1])} and {needs[-1]}.",
    ]
    doc = '"""' + "\n".join(lines).replace('"""', "'''").replace("\\", "\\\\") + '\n"""'
    imports = ["import argparse", "import json", "import math"]
    if ctx.data.name in ("mnist", "photo_patches") or ctx.upload:
        imports.append("from pathlib import Path")
    imports += ["", "import numpy as np", "import torch", "import torch.nn.functional as F", "from torch import nn"]
    if ctx.train.ema_decay is not None:
        imports.append("from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn")
    code = doc + "\n\nfrom __future__ import annotations\n\n" + "\n".join(imports)
    markdown = (f"# {e.name}\n\n" + (f"{e.description}\n\n" if e.description else "")
                + f"Exported from dlplay ({source}). Every cell below is plain PyTorch: the network layer by layer, "
                "its data, the optimizer, the schedule and the training loop, exactly as configured in the "
                "playground. Run the cells top to bottom: with the same seed they reproduce dlplay's loss curve "
                "on the CPU.")
    return Section("imports", "Imports", markdown, code)


def _settings(ctx: _Context) -> Section:
    t, d = ctx.train, ctx.data
    lines = ["# The experiment document's values; change them here."]
    lines.append(_settings_line("SEED", t.seed, "train.seed: initial weights, shuffling, augmentation and dropout"))
    lines.append('DEVICE = torch.device("cpu")  # "cuda" trains on a GPU (the last digits of the losses then differ)')
    lines.append("")
    lines.append("# Data (data.*)")
    lines.append(_settings_line("DATASET", d.name, DATASETS[d.name].description if d.name in DATASETS else "an upload"))
    info = DATASETS.get(d.name)
    if info is not None and info.generated:
        lines.append(_settings_line("N_SAMPLES", d.n_samples or info.default_n, "examples generated"))
        if d.name != "photo_patches":
            lines.append(_settings_line("NOISE", float(d.noise), "generated sets: noise level"))
    elif d.n_samples is not None:
        lines.append(_settings_line("N_SAMPLES", d.n_samples, "a class-balanced cap on the examples"))
    lines.append(_settings_line("VAL_FRACTION", float(d.val_fraction), "share held out for validation"))
    if d.train_subset is not None:
        lines.append(_settings_line("TRAIN_SUBSET", d.train_subset, "keep only the first N training examples"))
    lines.append(_settings_line("DATA_SEED", d.seed, "data.seed: generation and the train/validation split"))
    lines.append(_settings_line("CLASSES", ctx.classes))
    lines.append("")
    lines.append("# Training (train.*)")
    if t.batch_size == "full":
        lines.append("BATCH_SIZE = None  # full batch: every step sees the whole training set")
    else:
        lines.append(_settings_line("BATCH_SIZE", t.batch_size, "examples per step; an epoch's last partial batch is dropped"))
    lines.append(_settings_line("EPOCHS", None if t.epochs is None else float(t.epochs),
                                "passes over the training set" + ("; None: until stopped (Ctrl-C)" if t.epochs is None else "")))
    lines.append(_settings_line("MAX_STEPS", t.max_steps, "if set, stop after this many steps (wins over EPOCHS)"))
    lines.append(_settings_line("LR", float(t.optimizer.lr), "base learning rate (train.optimizer.lr)"))
    if t.warmup_steps:
        lines.append(_settings_line("WARMUP_STEPS", t.warmup_steps, "linear warm-up from 0 to the scheduled LR"))
    if t.l2:
        lines.append(_settings_line("L2", float(t.l2), "adds L2/2 * sum(w^2) over weights (not biases) to the loss"))
    if t.l1:
        lines.append(_settings_line("L1", float(t.l1), "adds L1 * sum(|w|) over weights to the loss"))
    if t.grad_clip is not None:
        lines.append(_settings_line("GRAD_CLIP", float(t.grad_clip), "clip the global gradient norm to this"))
    if t.ema_decay is not None:
        lines.append(_settings_line("EMA_DECAY", float(t.ema_decay), "evaluate with a running average of the weights"))
    lines.append(_settings_line("EVAL_EVERY", t.eval_every, "steps between evaluations; None: once per epoch"))
    lines.append(_settings_line("LOG_EVERY", t.log_every, "steps between printed metrics"))
    if not ctx.perceptron:
        lines.append(_settings_line("EXPLOSION_FACTOR", float(t.explosion_factor),
                                    "stop when the mean loss exceeds this multiple of the first step's"))
    markdown = ("## Settings\n\nThe values of the experiment document, in one place. `SEED` fixes the initial "
                "weights, the shuffling order and the dropout masks: keep it to reproduce dlplay's curve, change "
                "it to see how much a run depends on luck.")
    return Section("settings", "Settings", markdown, "\n".join(lines))


# -- data ------------------------------------------------------------------------


def _data(ctx: _Context) -> Section:
    d = ctx.data
    name = d.name
    info = DATASETS.get(name)
    base_roots = ["make_rng", "split_indices", "STREAM_SPLIT"]
    extra, loader, explain = "", [], ""
    cap = d.n_samples is not None and (ctx.upload or (info is not None and not info.generated))
    if cap:
        base_roots += ["stratified_order", "STREAM_CAP"]
    if d.preprocessing != "none":
        base_roots.append("channel_stats")

    if info is not None and info.kind == "2d":
        extra = _inline([name], [data_base, synthetic2d])
        base_roots.append("STREAM_GENERATE")
        loader = [f"x, y = {name}(N_SAMPLES, NOISE, make_rng(DATA_SEED, STREAM_GENERATE))"]
        explain = (f"The **{name}** set is generated, not downloaded: the same generator dlplay uses "
                   f"({inspect.getdoc(getattr(synthetic2d, name)).splitlines()[0]}), seeded from `DATA_SEED`.")
    elif name in ("shapes", "gratings"):
        extra = _inline([name], [data_base, generated_sets])
        base_roots.append("STREAM_GENERATE")
        loader = [f"x, y = {name}(N_SAMPLES, NOISE, make_rng(DATA_SEED, STREAM_GENERATE))"]
        explain = f"The **{name}** images are drawn by the same code dlplay uses, seeded from `DATA_SEED`."
    elif name == "digits":
        extra = _DIGITS
        loader = ["x, y = load_digit_images()"]
        explain = "The **digits** are scikit-learn's 1,797 8x8 handwritten digits (UCI), pixel counts scaled to [0, 1]."
    elif name == "mnist":
        where = f"download it from {ctx.data_url}" if ctx.data_url else "copy it from dlplay's server/data/"
        extra = _MNIST.format(path=json.dumps(str(image_sets.MNIST_PATH)), where=where)
        loader = ["x, y = load_mnist(data_file)"]
        explain = ("**MNIST-5k**: 5,000 real 28x28 MNIST digits, 500 of each, from the file dlplay ships "
                   "(`server/data/mnist_5k.npz`; copy it beside this script or pass its path).")
    elif name == "photo_patches":
        base_roots.append("STREAM_GENERATE")
        extra = _PHOTOS.format(patch=image_sets.PATCH, files=_lit(image_sets.PHOTO_FILES))
        loader = ["x, y, is_val = photo_patches(N_SAMPLES, make_rng(DATA_SEED, STREAM_GENERATE))"]
        explain = ("**Photo patches**: random 32x32 patches of scikit-learn's two sample photos, labelled by photo. "
                   "Validation patches come from the right-hand part of each photo, so none overlaps a training patch.")
    elif ctx.upload:
        extra = _UPLOAD.format(original=json.dumps(name))
        loader = ["x, y = load_uploaded(data_file)"]
        explain = ("This run trained on an **uploaded file**, which is not part of the export: save its examples "
                   "as an NPZ with arrays `x` and `y` and pass it with `--data` (or set `DATA_FILE`).")
    else:  # a dataset added to the catalog without export support: the registry test catches it
        raise NotImplementedError(f"dataset {name!r} has no export recipe in server/export/pytorch_code.py")

    base = _inline(base_roots, [data_base])
    fixed_val = name == "photo_patches"
    shape = (1, -1, 1, 1) if ctx.kind == "image" else (1, -1)
    body = [*loader]
    if cap:
        body += [
            "# data.n_samples caps a fixed set, keeping the classes balanced",
            "if N_SAMPLES < len(y):",
            "    keep = np.sort(stratified_order(y, make_rng(DATA_SEED, STREAM_CAP))[:N_SAMPLES])",
            "    x, y = x[keep], y[keep]",
        ]
    if fixed_val:
        body.append("train_idx, val_idx = _ordered_parts(y, is_val, make_rng(DATA_SEED, STREAM_SPLIT))")
    else:
        body.append("train_idx, val_idx = split_indices(y, VAL_FRACTION, make_rng(DATA_SEED, STREAM_SPLIT))")
    if d.train_subset is not None:
        body.append("train_idx = train_idx[:TRAIN_SUBSET]")
    body += [
        "x_train = torch.from_numpy(np.ascontiguousarray(x[train_idx], dtype=np.float32))",
        "y_train = torch.from_numpy(np.ascontiguousarray(y[train_idx], dtype=np.int64))",
        "x_val = torch.from_numpy(np.ascontiguousarray(x[val_idx], dtype=np.float32))",
        "y_val = torch.from_numpy(np.ascontiguousarray(y[val_idx], dtype=np.int64))",
    ]
    if d.preprocessing != "none":
        per = "per channel" if ctx.kind == "image" else "per feature"
        body += [
            f"# preprocessing {d.preprocessing!r}: statistics {per}, from the training split only",
            f"mean, std = channel_stats(x_train, {ctx.kind!r})",
            f"x_train = x_train - mean.reshape{shape}",
            f"x_val = x_val - mean.reshape{shape}",
        ]
        if d.preprocessing == "standardize":
            body += [f"x_train = x_train / std.reshape{shape}", f"x_val = x_val / std.reshape{shape}"]
    body.append("return x_train, y_train, x_val, y_val")
    in_shape = ", ".join(str(s) for s in ctx.summary.input_shape)
    load = (
        "def load_data(data_file: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:\n"
        f'    """{name}, split and preprocessed exactly as dlplay does.\n\n'
        f"    Returns x_train (N, {in_shape}) float32, y_train (N,) int64 class indices, and x_val, y_val alike.\n"
        '    """\n' + textwrap.indent("\n".join(body), "    ")
    )
    code = "\n\n\n".join(part for part in (base, extra, load) if part)
    markdown = (
        "## Data\n\n" + explain + "\n\n"
        f"The split is stratified: {d.val_fraction:.0%} of each class is held out for validation, and the training "
        "examples are ordered so that every prefix holds the classes in about their overall shares. "
        + ({"none": "The inputs are used as they are.",
            "center": "The training mean is subtracted from every input (per channel for images).",
            "standardize": "Inputs are standardized with the training split's mean and standard deviation "
                           "(per channel for images), so every input channel has mean 0 and variance 1."}
           [d.preprocessing])
    )
    return Section("data", "Data", markdown, code)


_DIGITS = '''def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits, pixel counts 0..16 scaled to [0, 1]: x (N, 1, 8, 8), y (N,)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images / 16.0).astype(np.float32)[:, None], bunch.target.astype(np.int64)'''

_MNIST = '''DATA_FILE = {path}  # dlplay's MNIST-5k (server/data/mnist_5k.npz)


def load_mnist(data_file: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """5,000 MNIST digits, 500 per class: x (N, 1, 28, 28) in [0, 1], y (N,).

    The file holds ``images`` (N, 28, 28) uint8 and ``labels`` (N,); it is looked for at
    ``data_file``, then ``DATA_FILE``, then beside this script.
    """
    candidates = [Path(p) for p in (data_file, DATA_FILE) if p] + [Path(__file__).resolve().parent / "mnist_5k.npz"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise SystemExit("mnist_5k.npz not found: {where} and put it beside this script, or pass --data PATH")
    with np.load(path, allow_pickle=False) as archive:
        images = archive["images"].astype(np.float32)[:, None] / 255.0
        labels = archive["labels"].astype(np.int64)
    return images, labels'''

_PHOTOS = '''PATCH = {patch}  # side of a photo patch, in pixels
PHOTO_FILES = {files}  # class order


def read_photos() -> list[np.ndarray]:
    """scikit-learn's two sample photos as uint8 (427, 640, 3) arrays, in PHOTO_FILES order."""
    import sklearn
    from PIL import Image

    folder = Path(sklearn.__file__).resolve().parent / "datasets" / "images"
    photos = []
    for file in PHOTO_FILES:
        with Image.open(folder / file) as image:
            photos.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
    return photos


def photo_patches(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n random 32x32 RGB patches, half from each photo, labelled by photo: x (n, 3, 32, 32), y (n,), is_val (n,).

    Validation patches come from the right-hand VAL_FRACTION of each photo's width and
    training patches from the rest, so no validation patch overlaps a training patch.
    """
    xs, ys, vals = [], [], []
    for label, photo in enumerate(read_photos()):
        height, width, _ = photo.shape
        count = n // 2 + (1 if label < n % 2 else 0)
        n_val = int(round(VAL_FRACTION * count))
        if 0 < n_val == count:
            n_val = count - 1  # keep at least one training patch per photo
        boundary = width if n_val == 0 else int(np.clip(round(width * (1 - VAL_FRACTION)), PATCH, width - PATCH))
        # Leftmost patch column: training patches lie in [0, boundary), validation ones in [boundary, width).
        left = np.concatenate([
            rng.integers(0, boundary - PATCH + 1, size=count - n_val),
            rng.integers(boundary, width - PATCH + 1, size=n_val),
        ])
        top = rng.integers(0, height - PATCH + 1, size=count)
        windows = np.lib.stride_tricks.sliding_window_view(photo, (PATCH, PATCH), axis=(0, 1))  # (H', W', 3, P, P)
        xs.append(windows[top, left])
        ys.append(np.full(count, label, dtype=np.int64))
        vals.append(np.arange(count) >= count - n_val)
    x = np.concatenate(xs).astype(np.float32)
    x /= 255.0
    return x, np.concatenate(ys), np.concatenate(vals)'''

_UPLOAD = '''DATA_FILE = None  # the uploaded examples ({original} in dlplay): an NPZ with x and y


def load_uploaded(data_file: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Your uploaded examples: x float32 (N, *input shape), images in [0, 1]; y int64 class indices 0..K-1.

    dlplay stored the upload as an NPZ with arrays ``x`` and ``y`` in exactly this form;
    save yours the same way (np.savez(path, x=x, y=y)) and pass it with --data.
    """
    path = data_file or DATA_FILE
    if not path or not Path(path).is_file():
        raise SystemExit("this run trained on an uploaded file: pass it as an NPZ with x and y (--data PATH)")
    with np.load(path, allow_pickle=False) as arrays:
        return arrays["x"].astype(np.float32), arrays["y"].astype(np.int64)'''


# -- network ------------------------------------------------------------------------


def _activation_expr(act, inner: str, module: str | None) -> str:
    """The expression applying activation spec ``act`` to ``inner`` (functional where torch has one)."""
    match act:
        case None | schemas.IdentityAct():
            return inner
        case schemas.SigmoidAct():
            return f"torch.sigmoid({inner})"
        case schemas.TanhAct():
            return f"torch.tanh({inner})"
        case schemas.ReLUAct():
            return f"torch.relu({inner})"
        case schemas.LeakyReLUAct(negative_slope=slope):
            return f"F.leaky_relu({inner}, negative_slope={_lit(float(slope))})"
        case schemas.PReLUAct():
            return f"self.{module}({inner})"
        case schemas.ELUAct(alpha=alpha):
            return f"F.elu({inner}, alpha={_lit(float(alpha))})"
        case schemas.GELUAct():
            return f"F.gelu({inner})"
        case schemas.SiLUAct():
            return f"F.silu({inner})"
        case schemas.SoftplusAct(beta=beta):
            return f"F.softplus({inner}, beta={_lit(float(beta))})"
        case schemas.MaxoutAct(pieces=pieces):
            return f"maxout({inner}, pieces={pieces})"
        case schemas.SignAct():
            return f"sign({inner})"
    raise NotImplementedError(f"activation {getattr(act, 'kind', act)!r} has no export in server/export/pytorch_code.py")



def _keyword(name: str, value: float, torch_default: float) -> str:
    """``, name=value`` unless it is torch's default (then the call stays short)."""
    return "" if float(value) == torch_default else f", {name}={_lit(float(value))}"


def _eps(spec) -> str:
    return _keyword("eps", spec.eps, 1e-5)


def _core_module(spec, in_shape: tuple[int, ...]) -> str | None:
    """The constructor expression of the layer's module, or None for layers written as tensor ops."""
    match spec:
        case schemas.LinearLayer():
            bias = "" if spec.bias else ", bias=False"
            return f"nn.Linear({math.prod(in_shape)}, {spec.out_features}{bias})"
        case schemas.MaxoutLayer():
            return f"Maxout({math.prod(in_shape)}, {spec.out_features}, pieces={spec.pieces})"
        case schemas.Conv2dLayer():
            args = [str(in_shape[0]), str(spec.out_channels), f"kernel_size={_pair(spec.kernel_size)}"]
            if _pair(spec.stride) != "1":
                args.append(f"stride={_pair(spec.stride)}")
            if spec.padding == "same":
                args.append('padding="same"')
            elif _pair(spec.padding) != "0":
                args.append(f"padding={_pair(spec.padding)}")
            if _pair(spec.dilation) != "1":
                args.append(f"dilation={_pair(spec.dilation)}")
            if spec.groups != 1:
                args.append(f"groups={spec.groups}")
            if not spec.bias:
                args.append("bias=False")
            return f"nn.Conv2d({', '.join(args)})"
        case schemas.MaxPool2dLayer() | schemas.AvgPool2dLayer():
            cls = "nn.MaxPool2d" if spec.kind == "max_pool2d" else "nn.AvgPool2d"
            args = [f"kernel_size={_pair(spec.kernel_size)}"]
            if spec.stride is not None:
                args.append(f"stride={_pair(spec.stride)}")
            if _pair(spec.padding) != "0":
                args.append(f"padding={_pair(spec.padding)}")
            return f"{cls}({', '.join(args)})"
        case schemas.BatchNormLayer():
            cls = "nn.BatchNorm2d" if len(in_shape) == 3 else "nn.BatchNorm1d"
            return f"{cls}({in_shape[0]}{_eps(spec)}{_keyword('momentum', spec.momentum, 0.1)})"
        case schemas.LayerNormLayer():
            return f"nn.LayerNorm({_lit(list(in_shape))}{_eps(spec)})"
        case schemas.GroupNormLayer():
            return f"nn.GroupNorm({spec.num_groups}, {in_shape[0]}{_eps(spec)})"
        case schemas.InstanceNormLayer():
            # torch's default is affine=False, dlplay's True: always said
            return f"nn.InstanceNorm2d({in_shape[0]}{_eps(spec)}, affine={spec.affine})"
        case schemas.DropoutLayer():
            # On a flat vector every feature is its own channel: spatial dropout is plain dropout there.
            cls = "nn.Dropout2d" if spec.spatial and len(in_shape) == 3 else "nn.Dropout"
            return f"{cls}(p={_lit(float(spec.p))})"
        case schemas.SqueezeExciteLayer():
            return f"SqueezeExcite({in_shape[0]}, reduction={spec.reduction})"
        case schemas.SpatialAttentionLayer():
            return f"SpatialAttention(kernel_size={spec.kernel_size})"
        case schemas.FlattenLayer() | schemas.GlobalAvgPoolLayer() | schemas.AddLayer() | schemas.ConcatLayer() \
                | schemas.ActivationLayer():
            return None
    raise NotImplementedError(f"layer kind {spec.kind!r} has no export in server/export/pytorch_code.py")



def _init_lines(target: str, spec, fan_in: int, fan_out: int) -> list[str]:
    """Statements that fill ``target`` (a weight or bias) as ``initializers.init_tensor_`` does, draw for draw."""
    fans = f"{fan_in} + {fan_out}"
    match spec:
        case schemas.DefaultInit():
            return []
        case schemas.ZerosInit():
            return [f"nn.init.zeros_({target})"]
        case schemas.ConstantInit(value=value):
            return [f"nn.init.constant_({target}, {_lit(float(value))})"]
        case schemas.NormalInit(mean=mean, std=std):
            return [f"nn.init.normal_({target}, {_lit(float(mean))}, {_lit(float(std))})"]
        case schemas.UniformInit(a=a):
            return [f"nn.init.uniform_({target}, -{_lit(float(a))}, {_lit(float(a))})"]
        case schemas.XavierNormalInit(gain=gain):
            return [f"nn.init.normal_({target}, 0.0, {_lit(float(gain))} * math.sqrt(2.0 / ({fans})))  "
                    f"# Xavier normal: fan_in {fan_in}, fan_out {fan_out}"]
        case schemas.XavierUniformInit(gain=gain):
            return [f"bound = {_lit(float(gain))} * math.sqrt(6.0 / ({fans}))  # Xavier uniform: fan_in {fan_in}, "
                    f"fan_out {fan_out}", f"nn.init.uniform_({target}, -bound, bound)"]
        case schemas.HeNormalInit() | schemas.HeUniformInit():
            fan = fan_in if spec.mode == "fan_in" else fan_out
            gain = f'nn.init.calculate_gain("{spec.nonlinearity}", {_lit(float(spec.a))})'
            if spec.kind == "he_normal":
                return [f"nn.init.normal_({target}, 0.0, {gain} / math.sqrt({fan}))  # He normal, {spec.mode} {fan}"]
            return [f"bound = {gain} * math.sqrt(3.0 / {fan})  # He uniform, {spec.mode} {fan}",
                    f"nn.init.uniform_({target}, -bound, bound)"]
        case schemas.LeCunNormalInit():
            return [f"nn.init.normal_({target}, 0.0, 1.0 / math.sqrt({fan_in}))  # LeCun normal, fan_in {fan_in}"]
        case schemas.OrthogonalInit(gain=gain):
            return [f"nn.init.orthogonal_({target}, {_lit(float(gain))})"]
        case schemas.LSUVInit():
            return [f"nn.init.orthogonal_({target}, 1.0)  # LSUV: orthogonal now, rescaled on data by lsuv_init()"]
    raise NotImplementedError(f"initializer {getattr(spec, 'kind', spec)!r} has no export")


def _network(ctx: _Context) -> Section:
    helpers: list[str] = []
    if ctx.uses("maxout") and any(layer.kind == "maxout" for layer in ctx.layers):
        helpers.append(inspect.getsource(Maxout))
    if ctx.uses("squeeze_excite"):
        helpers.append(inspect.getsource(SqueezeExcite))
    if ctx.uses("spatial_attention"):
        helpers.append(inspect.getsource(SpatialAttention))
    if any(isinstance(getattr(layer, "activation", None), schemas.MaxoutAct) for layer in ctx.layers):
        helpers.append(_MAXOUT_FN)
    if any(isinstance(getattr(layer, "activation", None), schemas.SignAct) for layer in ctx.layers):
        helpers.append(_SIGN_FN)

    init: list[str] = []
    forward: list[str] = []
    chain = ctx.chain
    for layer, info in zip(ctx.layers, ctx.summary.layers):
        attr, act_attr = ctx.attrs[layer.name]
        in_shapes = [ctx.shapes[name] for name in info.inputs]
        core = _core_module(layer, in_shapes[0])
        act = getattr(layer, "activation", None)
        block = ctx.model.blocks[layer.name]
        title = f"# {layer.name}: {layer.kind}" + (f" + {act.kind}" if act is not None and act.kind != "identity" else "")
        stmts: list[str] = []
        if core is not None:
            stmts.append(f"self.{attr} = {core}")
        if isinstance(act, schemas.PReLUAct):
            features = info.output_shape[0] if act.per_channel else 1
            stmts.append(f"self.{act_attr or attr} = nn.PReLU(num_parameters={features}, init={_lit(float(act.init))})")
        if hasattr(layer, "weight_init"):
            for weight, bias, groups in block.init_targets():
                fan_in, fan_out = compute_fans(weight.shape, groups)
                stmts += _init_lines(f"self.{attr}.weight", layer.weight_init, fan_in, fan_out)
                if bias is not None:
                    stmts += _init_lines(f"self.{attr}.bias", layer.bias_init, fan_in, fan_out)
        if len(stmts) > 1 or (stmts and attr != layer.name):  # the title says which layer the lines make
            init += [title, *stmts]
        else:
            init += stmts

        args = ["x" if chain else ("x" if name == INPUT else ctx.attrs[name][0]) for name in info.inputs]
        flatten = isinstance(layer, (schemas.LinearLayer, schemas.MaxoutLayer)) and len(in_shapes[0]) > 1
        if isinstance(layer, schemas.FlattenLayer):
            expr = f"{args[0]}.flatten(1)"
        elif isinstance(layer, schemas.GlobalAvgPoolLayer):
            expr = f"{args[0]}.mean(dim=(2, 3))"
        elif isinstance(layer, schemas.AddLayer):
            expr = " + ".join(args)
        elif isinstance(layer, schemas.ConcatLayer):
            expr = f"torch.cat([{', '.join(args)}], dim=1)"
        elif isinstance(layer, schemas.ActivationLayer):
            expr = args[0]
        else:
            expr = f"self.{attr}({args[0]}.flatten(1))" if flatten else f"self.{attr}({args[0]})"
        expr = _activation_expr(act, expr, act_attr or attr)
        target = "x" if chain else attr
        forward.append(f"{target} = {expr}  # {layer.name}: {_shape(info.output_shape)}")
    out_var = "x" if chain else ctx.attrs[ctx.layers[-1].name][0]
    forward.append(f"return {out_var}")

    in_shape, out_shape = _shape(ctx.summary.input_shape), _shape(ctx.summary.output_shape)
    net = (
        "class Net(nn.Module):\n"
        f'    """{ctx.experiment.name}: {in_shape} -> {out_shape}, {ctx.summary.total_params:,} parameters.\n\n'
        "    The layers are created in the order of the document, each initialized right after it is\n"
        "    made: the same random draws, in the same order, as dlplay's builder.\n"
        '    """\n\n'
        "    def __init__(self) -> None:\n"
        "        super().__init__()\n" + textwrap.indent("\n".join(init) or "pass", " " * 8) + "\n\n"
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
        f'        """{in_shape} -> {out_shape}."""\n' + textwrap.indent("\n".join(forward), " " * 8)
    )
    code = "\n\n\n".join([*(h.rstrip() for h in helpers), net])
    rows = ["| layer | kind | output shape | parameters |", "|---|---|---|---|"]
    for info in ctx.summary.layers:
        rows.append(f"| `{info.name}` | {info.kind} | {'×'.join(map(str, info.output_shape))} | {info.params:,} |")
    markdown = (
        "## The network\n\nA plain `nn.Module`, one attribute per layer of the document. `forward` shows how the "
        "data flows, with the shape of every intermediate (N is the batch size); activations are applied as "
        "functions after their layer.\n\n" + "\n".join(rows)
        + f"\n\nIn all {ctx.summary.total_params:,} parameters and {ctx.summary.total_macs:,} multiply-adds per example."
    )
    return Section("network", "The network", markdown, code)


_MAXOUT_FN = '''def maxout(x: torch.Tensor, pieces: int) -> torch.Tensor:
    """Maxout over axis 1: (N, C*pieces, ...) -> (N, C, ...), unit c the max of inputs c*pieces .. c*pieces+pieces-1."""
    return x.unflatten(1, (x.shape[1] // pieces, pieces)).amax(dim=2)'''

_SIGN_FN = '''class SignStep(torch.autograd.Function):
    """sgn with sgn(0) = +1 and a zero gradient that keeps the graph connected (like x.sign())."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return (x >= 0).to(x.dtype) * 2 - 1

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(grad_output)


def sign(x: torch.Tensor) -> torch.Tensor:
    """The perceptron's step: +1 where x >= 0, -1 elsewhere (any shape)."""
    return SignStep.apply(x)'''


# -- loss ------------------------------------------------------------------------


def _loss(ctx: _Context) -> Section:
    t = ctx.train
    binary = ctx.num_outputs == 1
    if ctx.perceptron:
        body = ["# The perceptron is not trained on a loss; it reports the share of misclassified examples.",
                "return ((out.reshape(-1) > 0).long() != y).to(out.dtype).mean()"]
        predict = "return (out.reshape(-1) > 0.0).long()  # sign outputs: class 1 is +1"
        what = "the 0-1 loss (the share of misclassified examples)"
    else:
        objective = build_objective(t.loss, ctx.num_outputs)
        threshold = objective.threshold
        if t.loss == "cross_entropy" and binary:
            body = ["return F.binary_cross_entropy_with_logits(out.reshape(-1), y.to(out.dtype))"]
            what = "binary cross-entropy on the single output's logit"
        elif t.loss == "cross_entropy":
            body = ["return F.cross_entropy(out, y)"]
            what = "softmax cross-entropy"
        elif t.loss == "mse" and binary:
            body = ["return F.mse_loss(out.reshape(-1), y.to(out.dtype)) * 0.5  # 1/2 (out - y)^2, y in {0, 1}"]
            what = "½(out − y)² with targets 0 and 1"
        elif t.loss == "mse":
            body = ["target = F.one_hot(y, out.shape[1]).to(out.dtype)",
                    "return F.mse_loss(out, target, reduction=\"sum\") * (0.5 / out.shape[0])  # 1/2 ||out - onehot||^2"]
            what = "½‖out − onehot(y)‖² per example"
        elif t.loss == "hinge" and binary:
            body = ["t = y.to(out.dtype) * 2 - 1  # {0, 1} -> {-1, +1}",
                    "return torch.clamp(1 - t * out.reshape(-1), min=0).mean()"]
            what = "the hinge loss max(0, 1 − t·out) with t = ±1"
        else:
            body = ["return F.multi_margin_loss(out, y)  # sum over wrong classes of max(0, 1 - out_y + out_i), / C"]
            what = "the multi-class SVM (hinge) loss"
        predict = (f"return (out.reshape(-1) > {_lit(float(threshold))}).long()" if binary
                   else "return out.argmax(1)")
    code = (
        "def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:\n"
        f'    """Mean {"0-1 loss" if ctx.perceptron else t.loss} over the batch: out {_shape(ctx.summary.output_shape)}, '
        'y (N,) -> a 0-d tensor."""\n' + textwrap.indent("\n".join(body), "    ") + "\n\n\n"
        "def predict(out: torch.Tensor) -> torch.Tensor:\n"
        '    """Network outputs -> predicted classes (N,)."""\n    ' + predict
    )
    markdown = f"## Loss\n\nThe loss is {what}, averaged over the batch."
    if binary and not ctx.perceptron:
        markdown += " Two classes need only one output: class 1 is predicted when it is above the threshold."
    return Section("loss", "Loss", markdown, code)


# -- optimizer and schedule -----------------------------------------------------------


def _optimizer_expr(opt) -> str:
    match opt:
        case schemas.SGDOpt():
            return "torch.optim.SGD(params, lr=LR)"
        case schemas.MomentumOpt():
            return f"torch.optim.SGD(params, lr=LR, momentum={_lit(float(opt.momentum))})"
        case schemas.NesterovOpt():
            return f"torch.optim.SGD(params, lr=LR, momentum={_lit(float(opt.momentum))}, nesterov=True)"
        case schemas.AdaGradOpt():
            return f"torch.optim.Adagrad(params, lr=LR, eps={_lit(float(opt.eps))})"
        case schemas.RMSPropOpt():
            return (f"torch.optim.RMSprop(params, lr=LR, alpha={_lit(float(opt.alpha))}, eps={_lit(float(opt.eps))}, "
                    f"momentum={_lit(float(opt.momentum))})")
        case schemas.AdamOpt():
            return (f"torch.optim.Adam(params, lr=LR, betas=({_lit(float(opt.beta1))}, {_lit(float(opt.beta2))}), "
                    f"eps={_lit(float(opt.eps))})")
        case schemas.AdamWOpt():
            return (f"torch.optim.AdamW(groups, lr=LR, betas=({_lit(float(opt.beta1))}, {_lit(float(opt.beta2))}), "
                    f"eps={_lit(float(opt.eps))}, weight_decay={_lit(float(opt.weight_decay))})")
        case schemas.LBFGSOpt():
            return f"torch.optim.LBFGS(params, lr=LR, history_size={opt.history_size}, max_iter={opt.max_iter})"
    raise NotImplementedError(f"optimizer {opt.kind!r} has no export")


def _schedule(ctx: _Context) -> Section:
    t = ctx.train
    s = t.schedule
    pre: list[str] = []
    body: list[str] = []
    match s:
        case schemas.ConstantSchedule():
            body = ["lr = LR * 1.0  # constant"]
            what = "constant"
        case schemas.StepSchedule():
            pre = [f"GAMMA = {_lit(float(s.gamma))}  # multiply the LR by this ...",
                   f"EVERY_EPOCHS = {_lit(float(s.every_epochs))}  # ... every this many epochs"]
            body = ["lr = LR * GAMMA ** math.floor(step / (EVERY_EPOCHS * steps_per_epoch) + 1e-9)"]
            what = f"step decay: ×{s.gamma:g} every {s.every_epochs:g} epochs"
        case schemas.ExponentialSchedule():
            pre = [f"DECAY_K = {_lit(float(s.k))}  # lr0 * exp(-k t), t in epochs"]
            body = ["t = step / steps_per_epoch  # epochs", "lr = LR * math.exp(-DECAY_K * t)"]
            what = f"exponential decay lr0·exp(−{s.k:g}·t), t in epochs"
        case schemas.InverseTimeSchedule():
            pre = [f"DECAY_K = {_lit(float(s.k))}  # lr0 / (1 + k t), t in epochs"]
            body = ["t = step / steps_per_epoch  # epochs", "lr = LR * (1.0 / (1.0 + DECAY_K * t))"]
            what = f"inverse-time decay lr0/(1 + {s.k:g}·t), t in epochs"
        case schemas.PlateauSchedule():
            pre = [f"PLATEAU_FACTOR = {_lit(float(s.factor))}  # multiply the LR by this ...",
                   f"PLATEAU_PATIENCE = {s.patience}  # ... after this many evaluations without improvement",
                   f"PLATEAU_MIN_LR = {_lit(float(s.min_lr))}", "", _PLATEAU]
            body = ["lr = plateau.apply(LR * 1.0)"]
            what = (f"reduce on plateau: ×{s.factor:g} after {s.patience} evaluations without a better "
                    "validation loss")
        case schemas.CosineRestartsSchedule():
            pre = [f"PERIOD_EPOCHS = {_lit(float(s.period_epochs))}  # length of the first cosine period",
                   f"PERIOD_MULT = {_lit(float(s.period_mult))}  # each period this many times the previous",
                   f"MIN_LR = {_lit(float(s.min_lr))}", "", _COSINE]
            body = ["pos = cosine_position(step, steps_per_epoch)",
                    "lr = MIN_LR + (LR - MIN_LR) * (1 + math.cos(math.pi * pos)) / 2"]
            what = "cosine annealing with warm restarts (SGDR)"
        case schemas.CyclicalSchedule():
            pre = [f"MIN_LR = {_lit(float(s.min_lr))}  # the bottom of the triangle",
                   f"PERIOD_EPOCHS = {_lit(float(s.period_epochs))}  # one cycle"]
            body = ["period = PERIOD_EPOCHS * steps_per_epoch",
                    "pos = math.fmod(step, period) / period",
                    "lr = MIN_LR + (LR - MIN_LR) * max(0.0, 1 - abs(2 * pos - 1))"]
            what = "triangular cyclical LR"
        case _:
            raise NotImplementedError(f"schedule {s.kind!r} has no export")
    if t.warmup_steps:
        body += ["if step < WARMUP_STEPS:  # linear warm-up", "    lr *= (step + 1) / WARMUP_STEPS"]
    args = "step: int, steps_per_epoch: int" + (", plateau: Plateau" if isinstance(s, schemas.PlateauSchedule) else "")
    fn = (
        f"def learning_rate({args}) -> float:\n"
        f'    """The LR of the step after `step` completed steps (from 0): {what}."""\n'
        + textwrap.indent("\n".join(body + ["return lr"]), "    ")
    )
    code = "\n".join(pre) + ("\n\n\n" if pre else "") + fn
    opt = t.optimizer
    if ctx.perceptron:
        markdown = (f"## The perceptron rule and the LR\n\nNo gradient: Rosenblatt's rule w ← w + a·Σ(t − y′)x moves the "
                    f"weights only for misclassified examples, with a = lr·τ/(τ + epoch), τ = {opt.tau:g}. "
                    f"The LR follows the schedule: {what}.")
    else:
        markdown = (f"## Optimizer and learning rate\n\nThe optimizer is **{opt.kind}** (lr {opt.lr:g}), built in the "
                    f"training loop below. The learning rate follows the schedule: {what}"
                    + (f", after a linear warm-up over {t.warmup_steps} steps" if t.warmup_steps else "") + ".")
    return Section("schedule", "Learning rate", markdown, code)


_PLATEAU = '''class Plateau:
    """ReduceLROnPlateau's bookkeeping: multiply the LR by PLATEAU_FACTOR after PLATEAU_PATIENCE stalled evaluations."""

    def __init__(self) -> None:
        self.best = math.inf
        self.bad = 0  # evaluations since the last improvement
        self.scale = 1.0  # product of the factors applied so far

    def update(self, val_loss: float) -> bool:
        """Record one validation loss; True when the LR was just reduced (1e-4 relative counts as better)."""
        if val_loss < self.best * (1 - 1e-4):
            self.best = val_loss
            self.bad = 0
            return False
        self.bad += 1
        if self.bad > PLATEAU_PATIENCE:
            self.bad = 0
            self.scale *= PLATEAU_FACTOR
            return True
        return False

    def apply(self, lr: float) -> float:
        """The reduced LR, never below PLATEAU_MIN_LR (and never raised to it)."""
        return max(lr * self.scale, min(PLATEAU_MIN_LR, lr))'''

_COSINE = '''def cosine_position(step: int, steps_per_epoch: int) -> float:
    """Position in [0, 1) within the current cosine period (periods grow by PERIOD_MULT)."""
    period = PERIOD_EPOCHS * steps_per_epoch  # steps
    t = float(step)
    if PERIOD_MULT == 1.0:
        t = math.fmod(t, period)
    else:
        n = int(math.log(t / period * (PERIOD_MULT - 1) + 1, PERIOD_MULT))
        t -= period * (PERIOD_MULT**n - 1) / (PERIOD_MULT - 1)
        period *= PERIOD_MULT**n
        while t >= period - 1e-9 * period:  # float drift at a restart
            t -= period
            period *= PERIOD_MULT
        while t < 0:
            period /= PERIOD_MULT
            t += period
    if t >= period - 1e-9 * period:
        t = 0.0
    return t / period'''


# -- training loop -------------------------------------------------------------------------


def _helpers(ctx: _Context) -> list[str]:
    """Functions the loop calls: LSUV, augmentation, penalty, the perceptron rule, loading dlplay weights."""
    out = []
    if ctx.lsuv_layers:
        entries = ", ".join(
            f"(model.{ctx.attrs[layer.name][0]}, {_lit(float(layer.weight_init.target_var))}, "
            f"{_lit(float(layer.weight_init.tolerance))}, {layer.weight_init.max_iters})"
            for layer in ctx.lsuv_layers
        )
        out.append(_LSUV.replace("{entries}", entries))
    a = ctx.augment
    if a is not None:
        roots = [name for name, on in (("hflip", a.hflip), ("translate", a.crop_padding > 0),
                                        ("rotate", a.rotate_degrees > 0)) if on]
        if roots:
            out.append(_inline(roots, [augment_module]))
        body = []
        if a.hflip:
            body.append("x = hflip(x, torch.rand(n, generator=generator, device=x.device) < 0.5)")
        if a.crop_padding > 0:
            body += [f"dy = torch.randint(-{a.crop_padding}, {a.crop_padding} + 1, (n,), generator=generator, device=x.device)",
                     f"dx = torch.randint(-{a.crop_padding}, {a.crop_padding} + 1, (n,), generator=generator, device=x.device)",
                     f"x = translate(x, dy, dx, {a.crop_padding})"]
        if a.rotate_degrees > 0:
            body += ["u = torch.rand(n, generator=generator, device=x.device, dtype=x.dtype)",
                     f"x = rotate(x, (2 * u - 1) * {_lit(float(a.rotate_degrees))})"]
        if a.noise_std > 0:
            body.append(f"x = x + {_lit(float(a.noise_std))} * torch.randn(x.shape, generator=generator, "
                        "device=x.device, dtype=x.dtype)")
        out.append(
            "def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:\n"
            '    """Random training-time transforms of a batch (data.augmentation), in dlplay\'s order:\n'
            '    flip, shift after zero padding, rotation, Gaussian noise. Draws from `generator`."""\n'
            "    n = x.shape[0]\n" + textwrap.indent("\n".join(body + ["return x"]), "    ")
        )
    if ctx.train.l1 or ctx.train.l2:
        terms = []
        if ctx.train.l2:
            terms.append("total = total + (L2 / 2) * sum(w.pow(2).sum() for w in weights)")
        if ctx.train.l1:
            terms.append("total = total + L1 * sum(w.abs().sum() for w in weights)")
        out.append(
            "def penalty(weights: list[torch.Tensor]) -> torch.Tensor:\n"
            '    """The regularization term added to the loss; weights are matrices and kernels, not biases."""\n'
            "    total = torch.zeros((), device=DEVICE)\n" + textwrap.indent("\n".join(terms + ["return total"]), "    ")
        )
    if ctx.perceptron:
        out.append(_PERCEPTRON)
    if ctx.train.init_from is not None:
        out.append(_init_from_helper(ctx))
    return out


_LSUV = '''class _StopForward(Exception):
    """Raised by the LSUV hook once it has the layer's output: the rest of the forward is wasted work."""


@torch.no_grad()
def lsuv_init(model: nn.Module, x: torch.Tensor) -> None:
    """LSUV (Mishkin & Matas 2016): rescale each LSUV layer's weight until its output variance on `x` is the target.

    Layers go in order, each measured on the already-normalized output of those before it,
    with the model in eval mode (dropout off, batch-norm statistics untouched).
    """
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        for layer, target_var, tolerance, max_iters in [{entries}]:

            def measure(layer: nn.Module = layer) -> float:
                captured = []

                def hook(module, args, output):
                    captured.append(output)
                    raise _StopForward

                handle = layer.register_forward_hook(hook)
                try:
                    model(x)
                except _StopForward:
                    pass
                finally:
                    handle.remove()
                return captured[0].double().var().item()

            iterations = 0
            variance = measure()
            while abs(variance - target_var) >= tolerance and iterations < max_iters:
                if not math.isfinite(variance) or variance <= 0.0:
                    break  # a dead or exploded input cannot be rescaled
                layer.weight.mul_(math.sqrt(target_var / variance))
                iterations += 1
                variance = measure()
    finally:
        for module, training in modes.items():
            module.training = training'''

_PERCEPTRON = '''@torch.no_grad()
def perceptron_update(linear: nn.Linear, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor, rate: float) -> None:
    """Rosenblatt's rule on a batch: w <- w + rate * sum_n (t_n - y'_n) x_n, b likewise; t = 2y - 1, y' = out."""
    x = x.reshape(x.shape[0], -1)
    err = (y.to(x.dtype) * 2 - 1) - out.reshape(-1).to(x.dtype)  # (N,): t - y', 0 when right, +-2 when wrong
    linear.weight.add_((err @ x).unsqueeze(0), alpha=rate)
    if linear.bias is not None:
        linear.bias.add_(err.sum().reshape(1), alpha=rate)'''


def _init_from_helper(ctx: _Context) -> str:
    from server.export.weights import document_names

    spec = ctx.train.init_from
    names = document_names(ctx.model)
    script = script_tensor_names(ctx.model)
    renames = {names[k]: script[k] for k in names if names[k] != script[k]}
    layers = spec.layers
    prefixes = None if layers is None else [f"{name}." for name in layers]
    return (
        f"DLPLAY_NAMES = {json.dumps(renames, indent=4) if renames else '{}'}  # dlplay's tensor name -> Net's, "
        "where they differ\n"
        f"LOAD_LAYERS = {_lit(prefixes) if prefixes is not None else 'None'}  # train.init_from.layers "
        "(as name prefixes); None: all\n\n\n"
        "def load_dlplay_weights(model: nn.Module, path: str) -> None:\n"
        '    """Start from weights dlplay exported (Export > Weights, a .safetensors file), as train.init_from does."""\n'
        "    from safetensors.torch import load_file\n\n"
        "    tensors = {DLPLAY_NAMES.get(name, name): t for name, t in load_file(path).items()\n"
        "               if LOAD_LAYERS is None or name.startswith(tuple(LOAD_LAYERS))}\n"
        f"    missing, unexpected = model.load_state_dict(tensors, strict={spec.strict and layers is None})\n"
        "    print(f\"loaded {len(tensors)} tensors from {path}\")"
    )


def _layer_modules(ctx: _Context, name: str) -> list[str]:
    """The ``Net`` attributes holding layer ``name``'s parameters (its module, its PReLU)."""
    index = [layer.name for layer in ctx.layers].index(name)
    layer, info = ctx.layers[index], ctx.summary.layers[index]
    core, act = ctx.attrs[name]
    has_module = _core_module(layer, ctx.shapes[info.inputs[0]]) is not None or (
        layer.kind == "activation" and isinstance(layer.activation, schemas.PReLUAct))
    return ([core] if has_module else []) + ([act] if act else [])


def _train(ctx: _Context) -> Section:
    t = ctx.train
    L: list[str] = []
    add = L.append
    add("x_train, y_train, x_val, y_val = (t.to(DEVICE) for t in load_data(data_file))")
    add("torch.manual_seed(SEED)  # the initial weights draw from this stream ...")
    add("model = Net().to(DEVICE)")
    add("torch.manual_seed(SEED)  # ... and dropout from a fresh one, as in dlplay")
    if ctx.lsuv_layers:
        add(f"lsuv_init(model, x_train[:{LSUV_BATCH}])  # data-dependent initialization")
    if t.init_from is not None:
        add("if init_from is not None:")
        add("    load_dlplay_weights(model, init_from)")
    if t.freeze:
        modules = [f"model.{attr}" for name in t.freeze for attr in _layer_modules(ctx, name)]
        if modules:
            add(f"for module in ({', '.join(modules)}{',' if len(modules) == 1 else ''}):  # train.freeze")
            add("    module.requires_grad_(False)")
    add("params = [p for p in model.parameters() if p.requires_grad]")
    if t.l1 or t.l2:
        add("weights = [p for p in params if p.ndim >= 2]  # what L1/L2 act on: weight matrices and kernels")
    if ctx.perceptron:
        linear = next(layer for layer in ctx.layers if layer.kind == "linear")
        add(f"linear = model.{ctx.attrs[linear.name][0]}  # the perceptron's one unit")
    elif isinstance(t.optimizer, schemas.AdamWOpt):
        add("# AdamW decays weight matrices and kernels, not biases or norm parameters")
        add("groups = [{\"params\": [p for p in params if p.ndim >= 2]},")
        add("          {\"params\": [p for p in params if p.ndim < 2], \"weight_decay\": 0.0}]")
        add("groups = [g for g in groups if g[\"params\"]]")
        add(f"optimizer = {_optimizer_expr(t.optimizer)}")
    else:
        add(f"optimizer = {_optimizer_expr(t.optimizer)}")
    add("")
    add("n_train, n_val = len(x_train), len(x_val)")
    add("batch_size = n_train if BATCH_SIZE is None else min(BATCH_SIZE, n_train)")
    add("steps_per_epoch = n_train // batch_size")
    add("if max_steps is not None:")
    add("    total_steps = max_steps")
    add("elif EPOCHS is not None:")
    add("    total_steps = max(1, math.ceil(EPOCHS * steps_per_epoch - 1e-9))")
    add("else:")
    add("    total_steps = None  # until stopped (Ctrl-C)")
    add("eval_every = EVAL_EVERY or steps_per_epoch")
    add("generator = torch.Generator(device=DEVICE)")
    add("generator.manual_seed(SEED)  # shuffling" + (" and augmentation draw" if ctx.augment else " draws") + " from this one")
    if t.ema_decay is not None:
        add("ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(EMA_DECAY), use_buffers=True)")
        add("ema.requires_grad_(False)")
        add("ema.eval()")
        add("eval_model = ema.module  # evaluation uses the running average of the weights")
    else:
        add("eval_model = model")
    plateau = isinstance(t.schedule, schemas.PlateauSchedule)
    if plateau:
        add("plateau = Plateau()")
    lr_args = "steps_per_epoch, plateau" if plateau else "steps_per_epoch"
    add(f"lr = learning_rate(0, {lr_args})")
    if not ctx.perceptron:
        add("for group in optimizer.param_groups:")
        add("    group[\"lr\"] = lr")
    if t.early_stopping is not None:
        add(f"best_val, best_step, bad_evals = math.inf, 0, 0  # early stopping: patience {t.early_stopping.patience}")
    add("history = {\"loss\": [], \"lr\": [], \"train\": [], \"val\": []}")
    add("interval_losses, interval_correct = [], 0")
    add("initial_loss, stop = None, None")
    add(f"print(f\"{{n_train}} training and {{n_val}} validation examples, {{steps_per_epoch}} steps per epoch, \"")
    add("      f\"{total_steps or 'unlimited'} steps\")")
    add("")
    add("step = 0")
    add("while total_steps is None or step < total_steps:")
    loop: list[str] = []
    a = loop.append
    if ctx.lr_moves:
        a(f"lr = learning_rate(step, {lr_args})")
        if not ctx.perceptron:
            a("for group in optimizer.param_groups:")
            a("    group[\"lr\"] = lr")
    if t.batch_size == "full":
        a("x, y = x_train, y_train  # full batch: the order is irrelevant")
    else:
        a("if batch_size == n_train:")
        a("    x, y = x_train, y_train  # full batch: the order is irrelevant")
        a("else:")
        a("    if step % steps_per_epoch == 0:  # a new epoch: a new random order")
        a("        order = torch.randperm(n_train, generator=generator, device=DEVICE)")
        a("        batches = order[: steps_per_epoch * batch_size].split(batch_size)")
        a("    index = batches[step % steps_per_epoch]")
        a("    x, y = x_train.index_select(0, index), y_train.index_select(0, index)")
    if ctx.augment is not None:
        a("x = augment(x, generator)")
    if ctx.perceptron:
        a("with torch.no_grad():")
        a("    out = model(x)")
        a("    loss = loss_fn(out, y)")
        a("    perceptron_update(linear, x, y, out, lr * TAU / (TAU + step // steps_per_epoch))")
    elif ctx.lbfgs:
        a("first = []")
        a("")
        a("def closure() -> torch.Tensor:")
        a("    optimizer.zero_grad(set_to_none=True)")
        a("    out = model(x)")
        a("    loss = loss_fn(out, y)")
        a("    total = loss + penalty(weights)" if (t.l1 or t.l2) else "    total = loss")
        a("    total.backward()")
        if t.grad_clip is not None:
            a("    nn.utils.clip_grad_norm_(params, GRAD_CLIP)")
        a("    if not first:")
        a("        first.append((out.detach(), loss.detach()))")
        a("    return total")
        a("")
        a("optimizer.step(closure)  # L-BFGS evaluates the batch several times; report the first")
        a("out, loss = first[0]")
    else:
        a("optimizer.zero_grad(set_to_none=True)")
        a("out = model(x)")
        a("loss = loss_fn(out, y)")
        a("(loss + penalty(weights)).backward()" if (t.l1 or t.l2) else "loss.backward()")
        if t.grad_clip is not None:
            a("nn.utils.clip_grad_norm_(params, GRAD_CLIP)")
        a("optimizer.step()")
    if t.ema_decay is not None:
        a("ema.update_parameters(model)")
    a("step += 1")
    a("last = total_steps is not None and step >= total_steps")
    a("loss_value = loss.item()")
    a("history[\"loss\"].append(loss_value)")
    a("history[\"lr\"].append(lr)")
    a("interval_losses.append(loss_value)")
    a("interval_correct += int((predict(out) == y).sum())")
    a("if step == 1:")
    a("    initial_loss = loss_value")
    a("    if not math.isfinite(initial_loss):")
    a("        stop = f\"the loss became {initial_loss} at step 1: the learning rate is probably too high\"")
    a("if step % LOG_EVERY == 0 or last or stop:")
    a("    mean = sum(interval_losses) / len(interval_losses)")
    a("    accuracy = interval_correct / (len(interval_losses) * batch_size)")
    a("    history[\"train\"].append({\"step\": step, \"loss\": mean, \"accuracy\": accuracy})")
    a("    print(f\"step {step:6d}  epoch {step / steps_per_epoch:7.2f}  loss {mean:.4f}  acc {accuracy:.3f}  lr {lr:.3g}\")")
    a("    interval_losses, interval_correct = [], 0")
    a("    if stop is None and not math.isfinite(mean):")
    a("        stop = f\"the loss became {mean} by step {step}: the learning rate is probably too high\"")
    if not ctx.perceptron:
        a("    elif stop is None and initial_loss > 0 and mean > EXPLOSION_FACTOR * initial_loss:")
        a("        stop = f\"the loss exploded by step {step} ({mean:.4g} > {EXPLOSION_FACTOR:g} x {initial_loss:.4g})\"")
    a("if n_val and (step % eval_every == 0 or last) and stop is None:")
    a("    val_loss, val_acc = evaluate(eval_model, x_val, y_val)")
    a("    history[\"val\"].append({\"step\": step, \"loss\": val_loss, \"accuracy\": val_acc})")
    a("    print(f\"step {step:6d}  validation loss {val_loss:.4f}  accuracy {val_acc:.3f}\")")
    if plateau:
        a("    if plateau.update(val_loss):")
        a(f"        lr = learning_rate(step, {lr_args})")
        if not ctx.perceptron:
            a("        for group in optimizer.param_groups:")
            a("            group[\"lr\"] = lr")
    if t.early_stopping is not None:
        es = t.early_stopping
        a(f"    if val_loss < best_val - {_lit(float(es.min_delta))}:")
        a("        best_val, best_step, bad_evals = val_loss, step, 0")
        a("    else:")
        a("        bad_evals += 1")
        a(f"        if bad_evals >= {es.patience}:")
        a("            stop = f\"early stopping: no better validation loss since step {best_step}\"")
    a("if stop is not None:")
    a("    print(f\"stopped: {stop}\")")
    a("    break")
    L += textwrap.indent("\n".join(loop), "    ").splitlines()
    L.append("return model, history")

    extra_args = ", init_from: str | None = None" if t.init_from is not None else ""
    train_fn = (
        f"def train(max_steps: int | None = MAX_STEPS, data_file: str | None = None{extra_args}) "
        "-> tuple[nn.Module, dict]:\n"
        '    """Build the network and train it as dlplay does; returns the model and its history.\n\n'
        '    history: "loss" and "lr" per step, "train" (mean loss and accuracy every LOG_EVERY steps)\n'
        '    and "val" (validation loss and accuracy at each evaluation).\n'
        '    """\n' + textwrap.indent("\n".join(L), "    ")
    )
    evaluate = (
        "@torch.no_grad()\n"
        "def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:\n"
        '    """Mean loss and accuracy over a split, in eval mode (dropout off, batch-norm running statistics)."""\n'
        "    n = len(y)\n"
        "    was_training = model.training\n"
        "    model.eval()\n"
        "    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)\n"
        "    correct = torch.zeros((), dtype=torch.int64, device=x.device)\n"
        f"    for i in range(0, n, {EVAL_BATCH}):\n"
        f"        xb, yb = x[i : i + {EVAL_BATCH}], y[i : i + {EVAL_BATCH}]\n"
        "        out = model(xb)\n"
        "        loss_sum += loss_fn(out, yb).double() * yb.shape[0]\n"
        "        correct += (predict(out) == yb).sum()\n"
        "    model.train(was_training)\n"
        "    return loss_sum.item() / n, correct.item() / n"
    )
    pieces = [*(_helpers(ctx)), evaluate, train_fn]
    if ctx.perceptron:
        pieces.insert(0, f"TAU = {_lit(float(t.optimizer.tau))}  # the perceptron's rate decays as tau / (tau + epoch)")
    code = "\n\n\n".join(pieces)
    steps = []
    if ctx.lsuv_layers:
        steps.append("rescales the LSUV layers on a batch of training data")
    if t.init_from is not None:
        steps.append("loads the starting weights given with `init_from` (dlplay started this run from saved weights)")
    if t.freeze:
        steps.append(f"freezes {', '.join(t.freeze)}")
    steps.append("shuffles the training set every epoch and walks through it in mini-batches"
                 if t.batch_size != "full" else "uses the whole training set as one batch")
    if ctx.augment is not None:
        steps.append("augments each batch")
    steps.append("updates the weights with the perceptron rule" if ctx.perceptron else
                 "runs forward, loss, backward and an optimizer step"
                 + (" (with the L1/L2 penalty added)" if (t.l1 or t.l2) else "")
                 + (", clipping the gradient norm" if t.grad_clip is not None else ""))
    steps.append("prints the mean loss every LOG_EVERY steps and evaluates on the validation split "
                 + ("every EVAL_EVERY steps" if t.eval_every else "once per epoch"))
    if t.early_stopping is not None:
        steps.append(f"stops early after {t.early_stopping.patience} evaluations without improvement")
    markdown = ("## Training loop\n\n`train()` builds the network from `SEED`, "
                + ", ".join(steps[:-1]) + f", and {steps[-1]}. It stops, as dlplay does, when the loss becomes "
                "infinite or NaN" + ("" if ctx.perceptron else " or explodes") + ".")
    return Section("train", "Training loop", markdown, code)


def _main(ctx: _Context) -> Section:
    data_arg = ctx.data.name == "mnist" or ctx.upload
    lines = [
        "def main() -> None:",
        f'    parser = argparse.ArgumentParser(description={json.dumps(ctx.experiment.name + " (exported from dlplay)")})',
        '    parser.add_argument("--steps", type=int, default=MAX_STEPS, help="stop after this many steps")',
        '    parser.add_argument("--history", help="save the per-step losses, LRs and evaluations to this JSON file")',
        '    parser.add_argument("--save", help="save the trained weights to this file (.safetensors or .pt)")',
    ]
    if data_arg:
        lines.append('    parser.add_argument("--data", help="the data file (an NPZ; see load_data)")')
    if ctx.train.init_from is not None:
        lines.append('    parser.add_argument("--init-from", help="a .safetensors file of starting weights (dlplay\'s export)")')
    lines.append("    args = parser.parse_args()")
    call = ["max_steps=args.steps"]
    if data_arg:
        call.append("data_file=args.data")
    if ctx.train.init_from is not None:
        call.append("init_from=args.init_from")
    lines += [
        f"    model, history = train({', '.join(call)})",
        "    if args.history:",
        "        with open(args.history, \"w\", encoding=\"utf-8\") as f:",
        "            json.dump(history, f)",
        "    if args.save:",
        "        if args.save.endswith(\".safetensors\"):",
        "            from safetensors.torch import save_file",
        "",
        "            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.save)",
        "        else:",
        "            torch.save(model.state_dict(), args.save)",
        "",
        "",
        "if __name__ == \"__main__\":",
        "    main()",
    ]
    return Section("main", "Run", "", "\n".join(lines))


def script_sections(experiment: schemas.Experiment, *, run_id: str | None = None, uploads_dir: Path | None = None,
                    filename: str = "experiment.py", data_url: str | None = None) -> list[Section]:
    """The script as sections: imports, settings, data, network, loss, schedule, training loop, main.

    Raises:
        NetworkError / DataError when the document cannot be built (as the trainer would).
    """
    ctx = _context(experiment, run_id, uploads_dir, filename)
    ctx.data_url = data_url
    sections = [_header(ctx), _settings(ctx), _data(ctx), _network(ctx), _loss(ctx), _schedule(ctx), _train(ctx),
                _main(ctx)]
    if _needs_tensor_name(sections):
        sections[0].code = sections[0].code.replace("from torch import nn", "from torch import Tensor, nn")
    return sections


def _needs_tensor_name(sections: list[Section]) -> bool:
    """Inlined dlplay code annotates with the bare name ``Tensor`` (read at definition time in a notebook)."""
    return any(re.search(r"(?<![.\w])Tensor\b", s.code) for s in sections[1:])


def pytorch_script(experiment: schemas.Experiment, *, run_id: str | None = None, uploads_dir: Path | None = None,
                   filename: str = "experiment.py", data_url: str | None = None) -> str:
    """One standalone Python file that trains ``experiment`` exactly as dlplay does (see the module docstring).

    ``data_url``: where the server offers the MNIST-5k file, named in the script's message when the file is missing.
    """
    sections = script_sections(experiment, run_id=run_id, uploads_dir=uploads_dir, filename=filename,
                               data_url=data_url)
    parts = [sections[0].code]
    for section in sections[1:]:
        rule = "# " + "-" * 98
        banner = f"{rule}\n# {section.title}\n{rule}\n\n" if section.key != "main" else ""
        parts.append(banner + section.code)
    return "\n\n\n".join(parts) + "\n"


__all__ = [
    "Section", "module_names", "pytorch_script", "script_sections",
    "script_tensor_names",
]
