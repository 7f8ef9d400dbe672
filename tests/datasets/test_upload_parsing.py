"""Uploads: CSV and NPZ parsing, every refusal with its message, storage, and loading by id."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from server.datasets import DataError, describe_data, load_dataset, parse_upload, save_upload
from server.schemas import DataSpec

LIMITS = dict(max_bytes=1_000_000, max_examples=1000)


def parse(filename: str, data: bytes, **limits):
    return parse_upload(filename, data, **{**LIMITS, **limits})


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def csv_rows(rows, header: str | None = None) -> bytes:
    lines = ([header] if header else []) + [",".join(str(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


# ---------------------------------------------------------------------------
# Good files
# ---------------------------------------------------------------------------


def test_csv_with_header_and_a_label_column_anywhere():
    data = b"a,label,b,c\n0.1,1,0.2,0.3\n0.4,0,0.5,0.6\n0.7,1,0.8,0.9\n"
    up = parse("table.csv", data)
    assert up.kind == "tabular" and up.input_shape == (3,)
    np.testing.assert_allclose(up.x, [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]])
    assert up.x.dtype == np.float32 and up.y.dtype == np.int64
    assert up.y.tolist() == [1, 0, 1] and up.classes == ["0", "1"]


def test_csv_without_header_takes_the_last_column_and_two_features_are_points():
    up = parse("points.csv", b"0.5,-0.5,0\n-0.5,0.5,1\n0.1,0.2,1\n")
    assert up.kind == "2d" and up.input_shape == (2,) and up.y.tolist() == [0, 1, 1]


def test_csv_semicolons_blank_lines_and_a_bom():
    up = parse("eu.csv", "\ufeffx;y;label\n1;2;3\n\n4;5;7\n".encode())
    assert up.x.tolist() == [[1, 2], [4, 5]] and up.classes == ["3", "7"] and up.y.tolist() == [0, 1]


def test_arbitrary_integer_labels_become_indices_named_by_value():
    up = parse("svm.csv", csv_rows([[0.1, 0.2, 0.3, -1], [0.3, 0.2, 0.1, 1], [0.5, 0.5, 0.5, -1.0]]))
    assert up.classes == ["-1", "1"] and up.y.tolist() == [0, 1, 0]


def test_csv_of_64_pixels_is_an_8x8_image_scaled_into_unit_range():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(20, 64))
    pixels[0, 0] = 255
    labels = np.arange(20) % 3
    up = parse("digits.csv", csv_rows(np.column_stack([pixels, labels]).tolist()))
    assert up.kind == "image" and up.input_shape == (1, 8, 8) and up.x.shape == (20, 1, 8, 8)
    np.testing.assert_allclose(up.x.reshape(20, 64), pixels / 255, rtol=1e-6)
    assert any("scaled to [0, 1]" in note for note in up.notes)


def test_image_values_are_scaled_into_unit_range():
    y = np.array([0, 1, 0, 1])
    standardized = parse("s.npz", npz(x=np.linspace(-2, 2, 4 * 64).reshape(4, 8, 8), y=y))
    assert standardized.x.min() == 0.0 and standardized.x.max() == 1.0
    assert standardized.notes == ["pixel values -2..2 scaled to [0, 1]"]
    constant = parse("c.npz", npz(x=np.full((4, 8, 8), -3.0), y=y))
    assert np.isfinite(constant.x).all() and constant.x.max() == 0.0
    unit = parse("u.npz", npz(x=np.full((4, 8, 8), 0.5), y=y))
    assert unit.notes == [] and np.all(unit.x == 0.5)


def test_npz_tabular_and_image_layouts():
    rng = np.random.default_rng(1)
    y = np.array([0, 1, 2, 1] * 5)
    flat = parse("f.npz", npz(x=rng.random((20, 5)), y=y))
    assert flat.input_shape == (5,) and flat.classes == ["0", "1", "2"]
    grey = parse("g.npz", npz(x=rng.random((20, 12, 10)).astype(np.float32), y=y.reshape(-1, 1)))
    assert grey.input_shape == (1, 12, 10)
    chw = rng.random((20, 3, 16, 16))
    rgb = parse("c.npz", npz(x=chw, y=y))
    assert rgb.input_shape == (3, 16, 16)
    np.testing.assert_allclose(rgb.x, chw.astype(np.float32))
    last = parse("l.npz", npz(x=np.moveaxis(chw, 1, 3), y=y))
    assert last.input_shape == (3, 16, 16) and np.array_equal(last.x, rgb.x)
    assert any("channels-last" in note for note in last.notes)
    flat_784 = parse("m.npz", npz(x=(rng.random((20, 784)) * 255).astype(np.uint8), y=y.astype(np.uint8)))
    assert flat_784.input_shape == (1, 28, 28) and flat_784.x.max() <= 1.0


# ---------------------------------------------------------------------------
# Refusals: each names the file, what is wrong, and the fix
# ---------------------------------------------------------------------------

GOOD_ROWS = [[0.1, 0.2, 0], [0.3, 0.4, 1]]

BAD_CASES = [
    ("empty", "a.csv", b"", "is empty"),
    ("only blank lines", "a.csv", b"\n \n\n", "has no rows"),
    ("header only", "a.csv", b"a,b,label\n", "has a header but no rows"),
    ("one column", "a.csv", b"1\n2\n", "single column"),
    ("ragged rows", "a.csv", b"1,2,0\n3,4,5,1\n", "line 2 has 4 values but line 1 has 3"),
    ("text in a feature", "a.csv", b"x,y,label\n1,2,0\n3,abc,1\n", r"line 3, column 2: 'abc' is not a number"),
    ("text label", "a.csv", b"1,2,0\n3,4,cat\n", "line 2, the label: 'cat' is not a number"),
    ("nan feature", "a.csv", b"1,nan,0\n3,4,1\n", "example 1 contains NaN or infinity"),
    ("inf feature", "a.csv", b"1,2,0\n3,inf,1\n", "example 2 contains NaN or infinity"),
    ("fractional label", "a.csv", b"1,2,0\n3,4,1.5\n", r"line 2: label 1.5 is not an integer"),
    ("one class", "a.csv", b"1,2,4\n3,4,4\n", r"has a single class \(4\)"),
    ("too many classes", "a.csv", csv_rows([[i, i] for i in range(101)]), "has 101 classes; the limit is 100"),
    ("not utf-8", "a.csv", b"1,2,0\n\xff\xfe,3,1\n", "is not UTF-8 text"),
    ("unknown type", "a.xlsx", b"PK\x03\x04", r"unsupported file type '\.xlsx'"),
    ("not a zip", "a.npz", b"this is not a zip", "is not a valid .npz archive"),
    ("no y", "a.npz", npz(x=np.zeros((4, 3))), r"has arrays \['x'\] but no 'y'"),
    ("no x or y", "a.npz", npz(data=np.zeros(3)), "but no 'x' and no 'y'"),
    ("length mismatch", "a.npz", npz(x=np.zeros((4, 3)), y=np.array([0, 1, 0])), "x has 4 examples but y has 3 labels"),
    ("1-D x", "a.npz", npz(x=np.zeros(4), y=np.array([0, 1, 0, 1])), r"x has shape \(4,\)"),
    ("2-D y", "a.npz", npz(x=np.zeros((4, 3)), y=np.zeros((4, 2))), r"y has shape \(4, 2\)"),
    ("five channels", "a.npz", npz(x=np.zeros((2, 5, 8, 8)), y=np.array([0, 1])), "images have 5 channels"),
    ("tiny images", "a.npz", npz(x=np.zeros((2, 1, 2, 2)), y=np.array([0, 1])), "images are 2x2"),
    ("strings", "a.npz", npz(x=np.array([["a", "b"], ["c", "d"]]), y=np.array([0, 1])), "dtype <U1, which is not numeric"),
    ("complex", "a.npz", npz(x=np.zeros((2, 2), dtype=complex), y=np.array([0, 1])), "not numeric"),
    ("nan in npz", "a.npz", npz(x=np.array([[0.0, np.nan], [1.0, 2.0]]), y=np.array([0, 1])), "example 1 contains NaN"),
    ("float labels", "a.npz", npz(x=np.zeros((2, 2)), y=np.array([0.0, 0.25])), "example 2: label 0.25 is not an integer"),
    ("5-D x", "a.npz", npz(x=np.zeros((2, 1, 1, 8, 8)), y=np.array([0, 1])), r"x has shape \(2, 1, 1, 8, 8\); accepted"),
    ("no examples", "a.npz", npz(x=np.zeros((0, 3)), y=np.zeros(0)), "has no examples"),
]


@pytest.mark.parametrize(("filename", "data", "message"), [case[1:] for case in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_upload_is_refused_with_a_clear_message(filename, data, message):
    with pytest.raises(DataError, match=message) as info:
        parse(filename, data)
    text = str(info.value)
    assert text.startswith(f"upload '{filename}': ") and ". Fix: " in text
    assert isinstance(info.value, ValueError) and info.value.fix


def test_too_big_and_too_many_examples():
    with pytest.raises(DataError, match="the file is 12 bytes; the limit is 10 bytes"):
        parse("a.csv", b"1,2,0\n3,4,1\n", max_bytes=10)
    with pytest.raises(DataError, match="has 2 examples; the limit is 1"):
        parse("a.csv", csv_rows(GOOD_ROWS), max_examples=1)
    with pytest.raises(DataError, match="has 3 examples; the limit is 2"):
        parse("a.npz", npz(x=np.zeros((3, 2)), y=np.array([0, 1, 0])), max_examples=2)


def test_npz_that_unpacks_too_big_is_refused_before_loading():
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.zeros((1000, 1000)), y=np.arange(1000) % 2)  # 8 MB of zeros in ~10 kB
    data = buffer.getvalue()
    assert len(data) < 100_000
    with pytest.raises(DataError, match="unpacks to 8,000,128 bytes"):
        parse("a.npz", data, max_bytes=len(data), max_examples=10_000)


_UNPICKLED: list[str] = []


def _record(what: str) -> str:
    _UNPICKLED.append(what)
    return what


class Booby:
    """Unpickling this calls _record: proof of whether a pickle was executed."""

    def __reduce__(self):
        return (_record, ("unpickled!",))


def test_pickled_npz_is_refused_and_never_unpickled():
    x = np.empty(2, dtype=object)
    x[0], x[1] = Booby(), Booby()
    data = npz(x=x, y=np.array([0, 1]))
    _UNPICKLED.clear()
    with pytest.raises(DataError, match=r"array 'x' holds Python objects \(a pickle\); pickled data is never loaded"):
        parse("evil.npz", data)
    with pytest.raises(DataError, match="Python objects"):
        parse("evil.npz", npz(x=np.zeros((2, 2)), y=np.array([Booby(), Booby()], dtype=object)))
    assert _UNPICKLED == []


def test_filename_in_messages_is_only_the_base_name():
    with pytest.raises(DataError, match=r"^upload 'secret\.csv': the file is empty"):
        parse("/home/someone/../secret.csv", b"")


# ---------------------------------------------------------------------------
# Storage and loading by id
# ---------------------------------------------------------------------------


def test_save_then_load_by_id(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.random((50, 1, 10, 10)).astype(np.float32)
    y = np.arange(50) % 5
    up = parse("faces.npz", npz(x=x, y=y))
    upload_id = save_upload(up, tmp_path)
    assert len(upload_id) == 16 and set(upload_id) <= set("0123456789abcdef")
    assert save_upload(up, tmp_path) == upload_id  # same content, same id
    stored = np.load(tmp_path / f"{upload_id}.npz", allow_pickle=False)  # never needs pickles
    assert stored["x"].shape == (50, 1, 10, 10)

    spec = DataSpec(name=f"upload:{upload_id}", val_fraction=0.2, preprocessing="standardize")
    ds = load_dataset(spec, uploads_dir=tmp_path)
    assert ds.kind == "image" and ds.input_shape == (1, 10, 10) and ds.classes == ["0", "1", "2", "3", "4"]
    assert ds.n_train == 40 and ds.n_val == 10 and ds.name == spec.name
    assert torch.bincount(ds.y_val).tolist() == [2] * 5
    assert "faces.npz" in ds.source
    raw = torch.cat([ds.denormalize(ds.x_train), ds.denormalize(ds.x_val)])
    assert torch.allclose(raw.sum(), torch.from_numpy(x).sum(), rtol=1e-4)
    described = describe_data(spec, uploads_dir=tmp_path)
    assert described.input_shape == (1, 10, 10) and described.num_classes == 5
    capped = load_dataset(DataSpec(name=f"upload:{upload_id}", n_samples=20), uploads_dir=tmp_path)
    assert capped.n_train + capped.n_val == 20


@pytest.mark.parametrize("bad_id", [
    "../../etc/passwd", "..%2f..%2fetc", "ABCDEF12", "abc", "a" * 33, "deadbeef/../../x", "deadbeef.npz", "",
])
def test_upload_ids_that_could_escape_the_directory_are_refused(tmp_path, bad_id):
    with pytest.raises(DataError, match="an upload id is 8 to 32 lowercase hex digits"):
        load_dataset(DataSpec(name=f"upload:{bad_id}"), uploads_dir=tmp_path)


def test_missing_upload_and_no_upload_directory(tmp_path):
    with pytest.raises(DataError, match="no such upload"):
        load_dataset(DataSpec(name="upload:0123456789abcdef"), uploads_dir=tmp_path)
    with pytest.raises(DataError, match="uploads are not available here"):
        load_dataset(DataSpec(name="upload:0123456789abcdef"))


def test_damaged_stored_upload(tmp_path):
    (tmp_path / "0123456789abcdef.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="the stored upload is damaged"):
        load_dataset(DataSpec(name="upload:0123456789abcdef"), uploads_dir=tmp_path)
