"""User uploads: parse and validate a CSV or NPZ file, store it, load it back by id.

Nothing uploaded is ever unpickled: NPZ members are vetted from their .npy headers
(dtype, shape, size) before ``np.load(..., allow_pickle=False)`` reads them.

Shapes: a CSV row or an NPZ ``x`` of shape (N, F) is a 2D point when F == 2, a
1 x s x s image when F == s*s with s >= MIN_IMAGE_SIDE (64 -> 8x8, 784 -> 28x28),
and a tabular row otherwise. NPZ images may be (N, H, W), (N, C, H, W) or
channels-last (N, H, W, C), with C = 1 or 3. Image values outside [0, 1] are rescaled
into it (0..255 -> /255); labels may be any integers (up to 2^53 in size) and are mapped to
0..K-1 in sorted order, the class names being the original values. A CSV's labels may also
be class names ("setosa", "cat"), sorted alphabetically.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .base import DataError

UPLOAD_PREFIX = "upload:"  # DataSpec.name of an uploaded set: "upload:<id>"
UPLOAD_ID = re.compile(r"[a-f0-9]{8,32}")
MIN_CLASSES, MAX_CLASSES = 2, 100
MIN_IMAGE_SIDE = 8  # a flat row of 64 = 8*8 or more square-many features is an image; 4, 9, 16, ... stay tabular
IMAGE_SIDE_RANGE = (4, 512)  # pixels
IMAGE_CHANNELS = (1, 3)  # grey or RGB (what display and the image messages support)
UNCOMPRESSED_FACTOR = 16  # an NPZ may unpack to at most this many times max_bytes (zip bombs)
NUMERIC_KINDS = "biuf"  # numpy dtype kinds accepted: bool, int, uint, float
# Numeric labels are class numbers read as float64, which holds every integer below 2^53 exactly; a larger
# "label" (1e300) is no class number, and cast to int64 it became class "-9223372036854775808".
MAX_LABEL = 2**53 - 1
MAX_CLASS_NAME = 64  # characters of a text label (a CSV's class name), as the page shows it in legends
# How numpy.savez (stored) and numpy.savez_compressed (deflate) write members; other methods are refused
# before anything is decompressed.
NPZ_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
# What reading a damaged archive raises: a bad CRC or header (BadZipFile), a corrupt deflate stream
# (zlib.error), a cut-off member (EOFError), numpy's own checks (ValueError, OSError).
DAMAGED_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError)


@dataclass
class UploadedData:
    """A validated upload. x: float32 ``(N, *input_shape)`` (images in [0, 1]); y: int64 ``(N,)`` in 0..K-1."""

    x: np.ndarray
    y: np.ndarray
    input_shape: tuple[int, ...]
    classes: list[str]
    filename: str = ""
    notes: list[str] = field(default_factory=list)  # what was done to the data, to tell the user

    @property
    def kind(self) -> str:
        return kind_of(self.input_shape)

    @property
    def n(self) -> int:
        return int(self.x.shape[0])


def kind_of(input_shape: tuple[int, ...]) -> str:
    if len(input_shape) == 3:
        return "image"
    return "2d" if input_shape == (2,) else "tabular"


def shape_for_features(n_features: int) -> tuple[int, ...]:
    """The input shape a flat row of ``n_features`` numbers stands for (see the module docstring)."""
    side = math.isqrt(n_features)
    if side >= MIN_IMAGE_SIDE and side * side == n_features:
        return (1, side, side)
    return (n_features,)


def _display_name(filename: str) -> str:
    name = Path(filename.replace("\\", "/")).name or "upload"
    return name if len(name) <= 80 else name[:77] + "..."


class _Upload:
    """Error helper bound to one file name: every message starts with "upload '<name>'"."""

    def __init__(self, filename: str):
        self.name = _display_name(filename)

    def error(self, problem: str, fix: str) -> DataError:
        return DataError(problem, fix, culprit=f"upload '{self.name}'")


def parse_upload(filename: str, data: bytes, *, max_bytes: int, max_examples: int) -> UploadedData:
    """Parse a .csv or .npz upload into validated arrays; raises DataError saying what is wrong and how to fix it.

    CSV: one example per row, numeric features, a label in the column named "label" (any
    case) or else the last column: an integer class number, or a class name (then every label
    is a name); a header row is optional (recognised by a non-numeric cell outside the label
    column, or one above numeric labels); comma, semicolon or tab separated. NPZ: arrays ``x``
    and ``y``.
    """
    up = _Upload(filename)
    if len(data) == 0:
        raise up.error("the file is empty", "choose a .csv or .npz file with examples in it")
    if len(data) > max_bytes:
        raise up.error(
            f"the file is {len(data):,} bytes; the limit is {max_bytes:,} bytes",
            "upload fewer examples, or save an NPZ with numpy.savez_compressed",
        )
    suffix = Path(up.name).suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        x, labels, notes = _parse_csv(up, data, max_examples)
    elif suffix == ".npz":
        x, labels, notes = _parse_npz(up, data, max_bytes, max_examples)
    else:
        raise up.error(
            f"unsupported file type '{suffix or '(none)'}'",
            "upload a .csv (rows of numbers, label last or in a 'label' column) or a .npz with arrays x and y",
        )
    return _finish(up, x, labels, notes)


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _parse_csv(up: _Upload, data: bytes, max_examples: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise up.error(f"is not UTF-8 text (byte {error.start})", "save the table as a UTF-8 CSV file") from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise up.error("has no rows", "put one example per line: features, then the label")
    first = lines[0][1]
    delimiter = max((",", ";", "\t"), key=first.count)
    if first.count(delimiter) == 0:
        raise up.error(
            "has a single column; it needs feature columns and a label column",
            "separate the values with commas, e.g. 0.5,1.2,1",
        )
    rows = [(number, [cell.strip() for cell in next(csv.reader([line], delimiter=delimiter))]) for number, line in lines]

    header: list[str] | None = None
    if _is_header(rows):
        header = rows[0][1]
        rows = rows[1:]
    if not rows:
        raise up.error("has a header but no rows of data", "add one example per line below the header")
    if len(rows) > max_examples:
        raise up.error(
            f"has {len(rows):,} examples; the limit is {max_examples:,}", f"keep at most {max_examples:,} rows"
        )
    width = len(header) if header is not None else len(rows[0][1])
    reference = "the header" if header is not None else f"line {rows[0][0]}"
    for number, cells in rows:
        if len(cells) != width:
            raise up.error(
                f"line {number} has {len(cells)} values but {reference} has {width}",
                "give every row the same number of columns",
            )

    label_column = width - 1
    if header is not None:
        names = [name.strip().lower() for name in header]
        if "label" in names:
            label_column = names.index("label")
    feature_rows = [cells[:label_column] + cells[label_column + 1 :] for _, cells in rows]
    try:
        features = np.array(feature_rows, dtype=np.float64).reshape(len(rows), width - 1)
    except ValueError:  # numpy's parser is stricter than float() ("1_000"); parse cell by cell, naming a culprit
        features = np.empty((len(rows), width - 1), dtype=np.float64)
        for r, (number, cells) in enumerate(rows):
            for column, cell in enumerate(cells):
                if column == label_column:
                    continue
                try:
                    features[r, column - (column > label_column)] = float(cell)
                except ValueError:
                    raise up.error(
                        f"line {number}, column {column + 1}: '{cell[:40]}' is not a number",
                        "use numbers only for the features (the label may be a class name); "
                        "a header may only be the first line",
                    ) from None
    line_numbers = [number for number, _ in rows]
    labels = _csv_labels(up, [cells[label_column] for _, cells in rows], line_numbers)
    return features, labels, []


def _is_header(rows: list[tuple[int, list[str]]]) -> bool:
    """Whether the first row names the columns rather than holding an example.

    A row with text outside its last cell is a header. A row whose only text is its last cell is a
    header above numeric labels ("x,y,label" over "0.5,1.2,1"), and an example when the labels below
    are class names too ("5.1,3.5,setosa" over "4.9,3.0,setosa").
    """
    first = rows[0][1]
    if all(_is_number(cell) for cell in first):
        return False
    if any(not _is_number(cell) for cell in first[:-1]) or len(rows) == 1:
        return True
    return _is_number(rows[1][1][-1]) if rows[1][1] else True


def _csv_labels(up: _Upload, cells: list[str], line_numbers: list[int]) -> np.ndarray:
    """The label column: float64 class numbers (checked integral and in range), or str class names; not a mix."""
    numeric = [_is_number(cell) for cell in cells]
    if all(numeric):
        labels = np.array(cells, dtype=np.float64)
        _check_label_values(up, labels, lambda i: f"line {line_numbers[i]}")
        return labels
    if any(numeric):  # "0, 1, cat": most likely a typo among class numbers
        i = numeric.index(False)
        raise up.error(
            f"line {line_numbers[i]}, the label: '{cells[i][:40]}' is not a number, but {sum(numeric):,} other labels are",
            "use class numbers (0, 1, 2, ...) throughout, or class names ('cat', 'dog') throughout",
        )
    for i, cell in enumerate(cells):
        if not cell:
            raise up.error(f"line {line_numbers[i]}: the label is empty", "give every row a label")
        if len(cell) > MAX_CLASS_NAME:
            raise up.error(
                f"line {line_numbers[i]}: the label '{cell[:40]}...' is {len(cell)} characters long; "
                f"class names may have at most {MAX_CLASS_NAME}",
                "use short class names, or class numbers 0, 1, 2, ...",
            )
    return np.array(cells, dtype=np.str_)


# ---------------------------------------------------------------------------
# NPZ
# ---------------------------------------------------------------------------


def _vet_member(up: _Upload, archive: zipfile.ZipFile, key: str, limit: int) -> tuple[tuple[int, ...], np.dtype]:
    """Read the .npy header of ``key`` without loading it: refuse pickles, odd dtypes and oversized arrays."""
    info = archive.getinfo(f"{key}.npy")
    if info.file_size > limit:
        raise up.error(
            f"array '{key}' unpacks to {info.file_size:,} bytes; the limit is {limit:,}", "upload fewer examples"
        )
    with archive.open(info) as stream:
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except ValueError as error:
            raise up.error(f"array '{key}' is not a readable .npy array ({error})", "save it with numpy.savez") from None
    if dtype.hasobject:
        raise up.error(
            f"array '{key}' holds Python objects (a pickle); pickled data is never loaded",
            "save plain numeric arrays, e.g. np.savez(f, x=x.astype('float32'), y=y.astype('int64'))",
        )
    if dtype.names is not None or dtype.kind not in NUMERIC_KINDS:
        raise up.error(
            f"array '{key}' has dtype {dtype}, which is not numeric",
            "store numbers: float32 features and int64 labels",
        )
    if math.prod(shape) * dtype.itemsize > limit:
        raise up.error(f"array '{key}' of shape {shape} is larger than {limit:,} bytes", "upload fewer examples")
    return tuple(shape), dtype


def _parse_npz(up: _Upload, data: bytes, max_bytes: int, max_examples: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    limit = UNCOMPRESSED_FACTOR * max_bytes
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except DAMAGED_ZIP_ERRORS:
        raise up.error("is not a valid .npz archive", "save it with numpy.savez or numpy.savez_compressed") from None
    with archive:
        members = [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
        missing = [key for key in ("x", "y") if key not in members]
        if missing:
            raise up.error(
                f"has arrays {sorted(members)} but no {' and no '.join(repr(k) for k in missing)}",
                "save with np.savez(file, x=examples, y=labels)",
            )
        for key in ("x", "y"):
            _check_member_format(up, archive.getinfo(f"{key}.npy"), key)
        try:
            x_shape, _ = _vet_member(up, archive, "x", limit)
            y_shape, _ = _vet_member(up, archive, "y", limit)
        except DataError:  # a ValueError too, but already the clear one
            raise
        except DAMAGED_ZIP_ERRORS as error:
            raise _damaged(up, error) from None
    if not 2 <= len(x_shape) <= 4:
        raise up.error(
            f"x has shape {x_shape}; accepted are (N, features), (N, H, W), (N, C, H, W) and (N, H, W, C)",
            "reshape x so that its first axis counts the examples",
        )
    if len(y_shape) == 2 and y_shape[1] == 1:
        y_shape = (y_shape[0],)
    if len(y_shape) != 1:
        raise up.error(f"y has shape {y_shape}; it must be one label per example, shape (N,)", "pass y as a 1-D array")
    if x_shape[0] != y_shape[0]:
        raise up.error(
            f"x has {x_shape[0]:,} examples but y has {y_shape[0]:,} labels", "give exactly one label per example"
        )
    if x_shape[0] > max_examples:
        raise up.error(f"has {x_shape[0]:,} examples; the limit is {max_examples:,}", f"keep at most {max_examples:,}")

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            x = arrays["x"]
            labels = arrays["y"].reshape(-1)
    except DAMAGED_ZIP_ERRORS as error:
        raise _damaged(up, error) from None

    notes: list[str] = []
    if x.ndim == 4 and x.shape[1] not in IMAGE_CHANNELS and x.shape[3] in IMAGE_CHANNELS:
        x = np.moveaxis(x, 3, 1)
        notes.append(f"x read as channels-last (N, H, W, C) and moved to (N, C, H, W) = {x.shape}")
    if x.ndim == 3:
        x = x[:, None]
    if labels.dtype.kind in "iu":  # checked before float64 rounds an int64 beyond 2^53
        huge = np.flatnonzero((labels > MAX_LABEL) | (labels < -MAX_LABEL) if labels.dtype.kind == "i" else labels > MAX_LABEL)
        if huge.size:
            i = int(huge[0])
            raise up.error(
                f"example {i + 1}: label {labels[i]} is out of range; class numbers may be at most 2^53 - 1 = {MAX_LABEL:,} "
                f"in size ({huge.size:,} such labels)",
                "labels are class numbers 0, 1, 2, ...",
            )
    labels = labels.astype(np.float64)
    _check_label_values(up, labels, lambda i: f"example {i + 1}")
    return x, labels, notes


def _check_member_format(up: _Upload, info: zipfile.ZipInfo, key: str) -> None:
    """Refuse encrypted members and compression numpy never writes, before reading a byte of them."""
    if info.flag_bits & 0x1:
        raise up.error(f"array '{key}' is encrypted", "save it without a password, with numpy.savez")
    if info.compress_type not in NPZ_METHODS:
        raise up.error(
            f"array '{key}' is compressed with zip method {info.compress_type}; numpy archives are "
            f"{' or '.join(NPZ_METHODS.values())}",
            "save it with numpy.savez or numpy.savez_compressed",
        )


def _damaged(up: _Upload, error: Exception) -> DataError:
    """The error for an archive that breaks while being read (a wrong CRC, a cut-off or corrupt member)."""
    detail = str(error) or type(error).__name__
    return up.error(
        f"is damaged: {detail[:200]} (the file changed or was cut short after it was saved)",
        "save it again with numpy.savez and upload the new file",
    )


# ---------------------------------------------------------------------------
# Shared validation
# ---------------------------------------------------------------------------


def _check_label_values(up: _Upload, labels: np.ndarray, where) -> None:
    """Numeric labels (float64) must be integers of at most ``MAX_LABEL`` in size; ``where(i)`` names example i."""
    bad = np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))
    if bad.size:
        i = int(bad[0])
        raise up.error(
            f"{where(i)}: label {labels[i]:g} is not an integer ({bad.size:,} such labels)",
            "labels are class numbers 0, 1, 2, ... (or, in a CSV, class names)",
        )
    huge = np.flatnonzero(np.abs(labels) > MAX_LABEL)
    if huge.size:
        i = int(huge[0])
        raise up.error(
            f"{where(i)}: label {labels[i]:g} is out of range; class numbers may be at most 2^53 - 1 = {MAX_LABEL:,} "
            f"in size ({huge.size:,} such labels)",
            "labels are class numbers 0, 1, 2, ... (or, in a CSV, class names)",
        )


def _finish(up: _Upload, x: np.ndarray, labels: np.ndarray, notes: list[str]) -> UploadedData:
    """Shape rules, finiteness, class count and image scaling, common to CSV and NPZ."""
    if x.shape[0] == 0:
        raise up.error("has no examples", "add at least one example of each of two classes")
    if x.ndim == 2:
        if x.shape[1] == 0:
            raise up.error("has no feature columns, only labels", "add the features before the label")
        input_shape = shape_for_features(x.shape[1])
        if len(input_shape) == 3:
            notes.append(f"{x.shape[1]} features read as a {input_shape[1]}x{input_shape[2]} grey image")
    else:
        channels, height, width = x.shape[1:]
        if channels not in IMAGE_CHANNELS:
            raise up.error(
                f"images have {channels} channels; 1 (grey) or 3 (RGB) are supported",
                "pass x as (N, 1, H, W) or (N, 3, H, W)",
            )
        low, high = IMAGE_SIDE_RANGE
        if not (low <= height <= high and low <= width <= high):
            raise up.error(f"images are {height}x{width}; each side must be {low} to {high} pixels", "resize the images")
        input_shape = (channels, height, width)
    x = x.reshape((x.shape[0],) + input_shape)

    finite = np.isfinite(x) if x.dtype.kind == "f" else np.ones(x.shape, dtype=bool)
    if not finite.all():
        i = int(np.flatnonzero(~finite.reshape(len(x), -1).all(axis=1))[0])
        raise up.error(
            f"example {i + 1} contains NaN or infinity ({int((~finite).sum()):,} such values)",
            "fill or drop missing values before uploading",
        )
    # Class names (a CSV's text labels) sort alphabetically, class numbers numerically.
    values, y = np.unique(labels if labels.dtype.kind == "U" else labels.astype(np.int64), return_inverse=True)
    if len(values) < MIN_CLASSES:
        raise up.error(
            f"has a single class ({values[0]}); classification needs at least {MIN_CLASSES}",
            "include examples of at least two classes",
        )
    if len(values) > MAX_CLASSES:
        raise up.error(f"has {len(values)} classes; the limit is {MAX_CLASSES}", "merge classes or drop the rare ones")

    x = x.astype(np.float32)
    if len(input_shape) == 3:
        low, high = float(x.min()), float(x.max())
        if low < 0.0 or high > 1.0:
            if low >= 0.0:  # keep black at 0: 0..255 -> /255, 0..16 -> /16
                x = x / high
            else:
                x = (x - low) / ((high - low) or 1.0)
            notes.append(f"pixel values {low:g}..{high:g} scaled to [0, 1]")
    return UploadedData(
        x=np.ascontiguousarray(x), y=y.astype(np.int64).reshape(-1), input_shape=input_shape,
        classes=[str(v) for v in values], filename=up.name, notes=notes,
    )


# ---------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------


def upload_id_of(uploaded: UploadedData) -> str:
    """A content hash: the same data always gets the same id (16 hex digits)."""
    digest = hashlib.sha256()
    digest.update(repr((uploaded.input_shape, uploaded.classes)).encode())
    digest.update(np.ascontiguousarray(uploaded.x, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(uploaded.y, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def save_upload(uploaded: UploadedData, uploads_dir: Path, *, upload_id: str | None = None) -> str:
    """Store ``uploaded`` as ``<uploads_dir>/<id>.npz`` (no pickles) and return its id; idempotent.

    The id defaults to `upload_id_of` (the content hash); the upload store passes one that
    also depends on the owner, so two sessions uploading the same file get two uploads.
    """
    upload_id = upload_id_of(uploaded) if upload_id is None else upload_id
    if not UPLOAD_ID.fullmatch(upload_id):
        raise ValueError(f"an upload id is 8 to 32 lowercase hex digits, got {upload_id!r}")
    uploads_dir = Path(uploads_dir)
    uploads_dir.mkdir(parents=True, exist_ok=True)
    path = uploads_dir / f"{upload_id}.npz"
    if path.exists():
        return upload_id
    fd, tmp = tempfile.mkstemp(dir=uploads_dir, prefix=f".{upload_id}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            np.savez_compressed(
                stream,
                x=np.ascontiguousarray(uploaded.x, dtype=np.float32),
                y=np.ascontiguousarray(uploaded.y, dtype=np.int64),
                classes=np.array(uploaded.classes, dtype=np.str_),
                input_shape=np.array(uploaded.input_shape, dtype=np.int64),
                filename=np.array(uploaded.filename, dtype=np.str_),
            )
        os.replace(tmp, path)  # atomic: a reader never sees half a file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return upload_id


def upload_path(upload_id: str, uploads_dir: Path | None) -> Path:
    """The file of an upload id, after checking the id is plain hex (no path tricks) and the file exists."""
    culprit = f"dataset '{UPLOAD_PREFIX}{upload_id[:40]}'"
    if not UPLOAD_ID.fullmatch(upload_id):
        raise DataError(
            "an upload id is 8 to 32 lowercase hex digits", "use the id the upload returned", culprit=culprit
        )
    if uploads_dir is None:
        raise DataError("uploads are not available here (no uploads directory)", "pick a built-in dataset", culprit=culprit)
    path = Path(uploads_dir) / f"{upload_id}.npz"
    if not path.is_file():
        raise DataError("no such upload (it may have expired)", "upload the file again", culprit=culprit)
    return path


def load_upload(upload_id: str, uploads_dir: Path | None) -> UploadedData:
    """Read back a stored upload (see `save_upload`), re-checking its consistency."""
    path = upload_path(upload_id, uploads_dir)
    culprit = f"dataset '{UPLOAD_PREFIX}{upload_id}'"
    try:
        with np.load(path, allow_pickle=False) as arrays:
            x, y = arrays["x"], arrays["y"]
            classes = [str(c) for c in arrays["classes"]]
            input_shape = tuple(int(s) for s in arrays["input_shape"])
            filename = str(arrays["filename"])
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as error:
        raise DataError(f"the stored upload is damaged ({error})", "upload the file again", culprit=culprit) from None
    consistent = (
        x.dtype == np.float32 and y.dtype == np.int64 and x.shape[1:] == input_shape and len(x) == len(y)
        and len(classes) >= MIN_CLASSES and (len(y) == 0 or (y.min() >= 0 and y.max() < len(classes)))
    )
    if not consistent:
        raise DataError("the stored upload is damaged (inconsistent arrays)", "upload the file again", culprit=culprit)
    return UploadedData(x=x, y=y, input_shape=input_shape, classes=classes, filename=filename)


def read_upload_header(upload_id: str, uploads_dir: Path | None) -> tuple[tuple[int, ...], list[str]]:
    """(input_shape, classes) of a stored upload without reading its examples."""
    path = upload_path(upload_id, uploads_dir)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return tuple(int(s) for s in arrays["input_shape"]), [str(c) for c in arrays["classes"]]
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as error:
        raise DataError(
            f"the stored upload is damaged ({error})", "upload the file again", culprit=f"dataset '{UPLOAD_PREFIX}{upload_id}'"
        ) from None
