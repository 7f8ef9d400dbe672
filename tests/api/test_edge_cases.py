"""Issue 9, item 7: every edge case a client can send gets a clear, documented error, and the docs match.

- websocket frames: nesting 1,000 deep, numbers beyond 64 bits or a double, NaN (``protocol.decode_command``);
- experiment documents: a seed torch cannot take, ``train.freeze`` naming no layer, infinities;
- uploads: a zip with a wrong CRC (or encrypted, or compressed as numpy never does), a label of 1e300;
- the OpenAPI document: every status a route raises is documented with the body really sent, the
  422 body is the string ``detail`` the app sends, and the schedule preview's schema is plain JSON Schema.

The same cases, against a real server, are in tests/reliability/.
"""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
import pytest
import torch
from api_helpers import make_settings, page_client, tiny_experiment
from route_statuses import api_routes, route_statuses

from server import protocol
from server.api.openapi import BODY_NOT_JSON, MIDDLEWARE_STATUSES
from server.app import create_app
from server.datasets import DataError, parse_upload
from server.schemas import SEED_MAX, SEED_MIN, Experiment

MAX_BYTES = 2 * 1024**2


def decode(text: str) -> dict:
    return protocol.decode_command(text, max_bytes=MAX_BYTES)


def rejected(text: str) -> protocol.CommandError:
    with pytest.raises(protocol.CommandError) as info:
        decode(text)
    return info.value


# ---------------------------------------------------------------------------
# Websocket frames
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [protocol.MAX_COMMAND_DEPTH + 1, 1_000, 100_000])
def test_deep_nesting_is_bad_json_naming_the_limit(depth):
    error = rejected('{"cmd": "ping", "id": ' + "[" * depth + "]" * depth + "}")
    assert error.code == "bad_json"
    assert f"at most {protocol.MAX_COMMAND_DEPTH} levels" in error.message and f"nests {depth + 1:,}" in error.message


def test_nesting_up_to_the_limit_decodes_and_brackets_in_strings_do_not_count():
    levels = protocol.MAX_COMMAND_DEPTH - 1  # the command object is one level
    assert decode('{"cmd": "ping", "id": ' + "[" * levels + "]" * levels + "}")["cmd"] == "ping"
    hidden = '"' + "[{" * 5000 + '\\"' + '"'
    assert decode('{"cmd": "ping", "id": ' + hidden + "}")["id"].startswith("[{[{")
    assert protocol.json_depth('{"a": [1, {"b": "]]]]"}]}') == 3


@pytest.mark.parametrize("text, culprit", [
    ('{"cmd": "set", "run_id": "r", "lr": 1' + "0" * 400 + "}", "set lr: an integer of 401 digits is out of range"),
    ('{"cmd": "set", "run_id": "r", "lr": 1' + "0" * 10_000 + "}", "set lr: an integer of 10,001 digits"),
    ('{"cmd": "probe", "run_id": "r", "probe": "saliency", "index": 1e999}', "probe index: 1e999 is too large for a double"),
    ('{"cmd": "predict", "run_id": "r", "input": [[0, 1], [0.5, -1e999]]}', "predict input[1][1]: -1e999"),
    ('{"cmd": "subscribe", "run_id": "r", "after_seq": 9223372036854775808}', "subscribe after_seq: an integer of 19"),
    ('{"cmd": "views", "run_id": "r", "views": {"saliency": {"index": 1e400}}}', "views views.saliency.index: 1e400"),
])
def test_numbers_out_of_range_are_bad_arguments_naming_the_field(text, culprit):
    error = rejected(text)
    assert error.code == "bad_arguments" and error.message.startswith(culprit), error.message
    assert error.run_id == "r"


def test_an_out_of_range_id_is_named_and_not_echoed():
    error = rejected('{"cmd": "ping", "id": 1e999}')
    assert (error.code, error.request_id) == ("bad_arguments", None) and error.message.startswith("ping id: 1e999")
    error = rejected('{"cmd": "probe", "id": 7, "run_id": "r", "index": 1e999}')
    assert error.request_id == 7


def test_64_bit_integers_and_large_finite_floats_pass():
    command = decode('{"cmd": "set", "run_id": "r", "lr": 1e300, "id": -9223372036854775807, "x": 9223372036854775807}')
    assert command["lr"] == 1e300 and command["x"] == 2**63 - 1


def test_nan_and_infinity_literals_are_bad_json():
    for literal in ("NaN", "Infinity", "-Infinity"):
        error = rejected('{"cmd": "set", "run_id": "r", "lr": ' + literal + "}")
        assert error.code == "bad_json" and f"{literal} is not a JSON number" in error.message


def test_an_experiment_keeps_its_out_of_range_numbers_for_the_schema():
    """Inside ``start``'s experiment the schema names the path, so the decoder leaves those numbers to it."""
    document = tiny_experiment()
    text = '{"cmd": "start", "experiment": ' + Experiment.model_validate(document).model_dump_json() + "}"
    text = text.replace('"grad_clip":null', '"grad_clip":1e999')
    command = decode(text)
    assert command["experiment"]["train"]["grad_clip"] == float("inf")
    with pytest.raises(Exception, match="finite number"):
        Experiment.model_validate(command["experiment"])


@pytest.mark.parametrize("text, code", [
    ("not json", "bad_json"), ("[1, 2]", "bad_command"), ('"ping"', "bad_command"), ("", "bad_json"),
    ("x" * (MAX_BYTES + 1), "too_large"), ('{"cmd": "' + "\u00e9" * (MAX_BYTES // 2) + '"}', "too_large"),
])
def test_other_malformed_frames(text, code):
    assert rejected(text).code == code


# ---------------------------------------------------------------------------
# Experiment documents: rejected at validation, before anything is queued
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app(make_settings(tmp_path_factory.mktemp("edge-cases") / "data"))


@pytest.fixture(scope="module")
def client(app):
    with page_client(app) as client:
        yield client


def problems(client, **train) -> list[dict]:
    """POST /api/validate's problems with a tiny experiment whose ``train`` has ``train``'s fields."""
    response = client.post("/api/validate", json=tiny_experiment(**train))
    assert response.status_code == 200, response.text
    return response.json()["errors"]


@pytest.mark.parametrize("seed", [SEED_MAX + 1, SEED_MIN - 1, 10**400])
def test_a_seed_torch_cannot_take_is_refused_at_validation(client, seed):
    with pytest.raises((RuntimeError, ValueError), match="Overflow"):
        torch.manual_seed(seed)  # the oracle: torch refuses it
    (problem,) = problems(client, seed=seed)
    assert problem["path"] == "train.seed" and "Fix: use a value" in problem["message"]


@pytest.mark.parametrize("seed", [SEED_MAX, SEED_MIN, 0])
def test_every_seed_torch_takes_is_accepted(client, seed):
    torch.manual_seed(seed)
    torch.Generator().manual_seed(seed)
    assert problems(client, seed=seed) == []


def test_unknown_freeze_names_are_refused_at_validation_with_the_layer_names(client):
    (problem,) = problems(client, freeze=["hidden", "conv9"])
    assert problem["path"] == "train.freeze"
    assert problem["problem"] == "names 'conv9', which the network does not have"
    assert problem["fix"] == "freeze some of the network's layers: hidden, out"
    assert problems(client, freeze=["hidden"]) == []


def test_infinite_numbers_in_a_document_name_their_field(app):
    """JSON has no infinity, but 1e999 decodes as one; the route's JSON decoder hands it to the schema."""
    document = tiny_experiment()
    text = Experiment.model_validate(document).model_dump_json().replace('"grad_clip":null', '"grad_clip":1e999')
    with page_client(app) as client:
        response = client.post("/api/validate", content=text, headers={"content-type": "application/json"})
    (problem,) = response.json()["errors"]
    assert problem["path"] == "train.grad_clip" and "finite number" in problem["message"]


# ---------------------------------------------------------------------------
# Uploads
# ---------------------------------------------------------------------------


def npz_bytes(compressed: bool = False) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, x=np.random.default_rng(0).random((20, 2)), y=np.arange(20) % 2)
    return buffer.getvalue()


def patch_headers(data: bytes, local_offset: int, central_offset: int, value: bytes) -> bytes:
    """Write ``value`` at the given offsets of every local and central zip header."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        at = out.find(signature)
        while at >= 0:
            out[at + offset : at + offset + len(value)] = value
            at = out.find(signature, at + 4)
    return bytes(out)


def test_a_good_npz_still_parses():
    assert parse_upload("a.npz", npz_bytes(True), max_bytes=MAX_BYTES, max_examples=100).n == 20


@pytest.mark.parametrize("compressed", [False, True])
def test_a_zip_with_a_wrong_crc_is_a_damaged_upload(compressed):
    data = patch_headers(npz_bytes(compressed), 14, 16, struct.pack("<I", 0xDEADBEEF))
    with pytest.raises(zipfile.BadZipFile, match="Bad CRC-32"):  # the oracle: the zip module itself finds it broken
        zipfile.ZipFile(io.BytesIO(data)).read("x.npy")
    with pytest.raises(DataError, match=r"is damaged: Bad CRC-32 for file '[xy].npy'.*Fix: save it again"):
        parse_upload("a.npz", data, max_bytes=MAX_BYTES, max_examples=100)


def test_a_corrupt_deflate_stream_is_a_damaged_upload():
    data = bytearray(npz_bytes(True))
    start = data.find(b"PK\x03\x04")
    name_length, extra_length = struct.unpack("<HH", data[start + 26 : start + 30])
    body = start + 30 + name_length + extra_length
    data[body + 20 : body + 60] = bytes(b ^ 0x5A for b in data[body + 20 : body + 60])
    with pytest.raises(DataError, match="is damaged"):
        parse_upload("a.npz", bytes(data), max_bytes=MAX_BYTES, max_examples=100)


def test_encrypted_members_and_foreign_compression_are_refused_before_reading():
    encrypted = patch_headers(npz_bytes(), 6, 8, b"\x01")
    with pytest.raises(DataError, match="array 'x' is encrypted"):
        parse_upload("a.npz", encrypted, max_bytes=MAX_BYTES, max_examples=100)
    lzma = patch_headers(npz_bytes(), 8, 10, struct.pack("<H", zipfile.ZIP_LZMA))
    with pytest.raises(DataError, match="compressed with zip method 14; numpy archives are stored or deflate"):
        parse_upload("a.npz", lzma, max_bytes=MAX_BYTES, max_examples=100)


@pytest.mark.parametrize("label", ["1e300", "-1e300", "9007199254740993", "1e16"])
def test_a_csv_label_beyond_2_to_the_53_is_out_of_range(label):
    data = f"x,y,label\n0,1,0\n1,0,{label}\n".encode()
    with pytest.raises(DataError, match=rf"line 3: label \S+ is out of range; class numbers may be at most 2\^53 - 1"):
        parse_upload("a.csv", data, max_bytes=MAX_BYTES, max_examples=100)


def test_npz_integer_labels_beyond_2_to_the_53_are_out_of_range():
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((2, 2)), y=np.array([0, 2**64 - 1], dtype=np.uint64))
    with pytest.raises(DataError, match="example 2: label 18446744073709551615 is out of range"):
        parse_upload("a.npz", buffer.getvalue(), max_bytes=MAX_BYTES, max_examples=100)


def test_csv_labels_may_be_class_names():
    with_header = parse_upload("iris.csv", b"petal,sepal,species\n1.4,5.1,setosa\n4.7,7.0,versicolor\n1.3,4.9,setosa\n",
                               max_bytes=MAX_BYTES, max_examples=100)
    assert with_header.classes == ["setosa", "versicolor"] and with_header.y.tolist() == [0, 1, 0]
    without = parse_upload("iris.csv", b"1.4,5.1,setosa\n4.7,7.0,versicolor\n", max_bytes=MAX_BYTES, max_examples=100)
    assert without.n == 2 and without.x.tolist() == [[1.399999976158142, 5.099999904632568], [4.699999809265137, 7.0]]
    label_first = parse_upload("a.csv", b"label,a,b\ncat,1,2\ndog,3,4\n", max_bytes=MAX_BYTES, max_examples=100)
    assert label_first.classes == ["cat", "dog"] and label_first.x.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_csv_labels_are_numbers_throughout_or_names_throughout():
    with pytest.raises(DataError, match="line 3, the label: 'cat' is not a number, but 1 other labels are"):
        parse_upload("a.csv", b"a,b,label\n1,2,0\n3,4,cat\n", max_bytes=MAX_BYTES, max_examples=100)
    with pytest.raises(DataError, match="line 3: the label is empty"):
        parse_upload("a.csv", b"a,b,label\n1,2,cat\n3,4,\n", max_bytes=MAX_BYTES, max_examples=100)


# ---------------------------------------------------------------------------
# The OpenAPI document against what the routes send
# ---------------------------------------------------------------------------


def documented(spec: dict, route) -> dict[str, set[int]]:
    """Method -> the error statuses the route's operation documents, less those the framework answers for it."""
    out = {}
    for method in route.methods:
        responses = spec["paths"][route.path_format][method.lower()]["responses"]
        out[method] = {int(status) for status, response in responses.items()
                       if status[0] in "45" and response["description"] != BODY_NOT_JSON}
    return out


def test_every_status_a_route_raises_is_documented_and_every_documented_one_is_raised(app):
    spec = app.openapi()
    routes = api_routes(app)
    assert len(routes) > 15, "the scan found too few routes"
    problems_found = []
    for route in routes:
        statuses = route_statuses(route)
        for method, docs in documented(spec, route).items():
            where = f"{method} {route.path_format}"
            if statuses.known - docs:
                problems_found.append(f"{where} raises {sorted(statuses.known - docs)} without documenting them "
                                      "(responses=errors(...) on its decorator, server/api/openapi.py)")
            extra = docs - statuses.known - {422, *MIDDLEWARE_STATUSES}
            if extra and not statuses.unresolved:
                problems_found.append(f"{where} documents {sorted(extra)} but never raises them")
    assert not problems_found, "\n".join(problems_found)


def test_the_scan_sees_each_way_a_route_raises(app):
    """Literal statuses, helpers (owned_run), dependencies (get_session_id), local names and helper returns."""
    by_path = {(next(iter(r.methods)), r.path_format): route_statuses(r).known for r in api_routes(app)}
    assert {404, 429} <= by_path[("GET", "/api/runs/{run_id}")]
    assert {400, 404, 413, 503} <= by_path[("GET", "/api/datasets/{name}/preview")]  # status = 413 ... in a helper
    assert {400, 501} <= by_path[("GET", "/api/runs/{run_id}/export")]  # a helper's returned numbers


def test_error_bodies_are_documented_as_sent(app):
    spec = app.openapi()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's array-of-errors shape is not what the app sends
    assert schemas["ValidationErrorBody"]["properties"]["detail"]["type"] == "string"
    assert schemas["ErrorBody"]["properties"]["detail"]["type"] == "string"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status[0] in "45":
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    expected = "ValidationErrorBody" if status == "422" else "ErrorBody"
                    assert ref.endswith(expected), f"{method} {path} {status}"


def test_a_real_422_and_404_match_the_documented_bodies(app):
    with page_client(app) as client:
        invalid = client.get("/api/datasets/spiral/preview", params={"n": "many"})
        missing = client.get("/api/presets/no-such-preset")
    assert invalid.status_code == 422
    body = invalid.json()
    assert isinstance(body["detail"], str) and "n" in body["detail"] and body["errors"][0]["loc"] == ["query", "n"]
    assert missing.status_code == 404 and set(missing.json()) == {"detail"}


def test_the_schedule_preview_schema_is_plain_json_schema(app):
    schema = app.openapi()["paths"]["/api/schedule/preview"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "prefixItems" not in str(schema)
    assert schema["items"] == {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
    with page_client(app) as client:
        points = client.post("/api/schedule/preview", json={"train": {}, "steps_per_epoch": 10, "total_steps": 30}).json()
    assert points[0] == [1, 0.001] and len(points) == 30 and all(len(p) == 2 for p in points)
