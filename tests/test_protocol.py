"""protocol.py: envelopes, JSON safety, PNG images (checked against Pillow as an independent decoder)."""

import base64
import io
import json
import math

import numpy as np
import pytest
import torch

from server import protocol


def test_stamper_numbers_messages_in_order():
    stamper = protocol.Stamper("run-1")
    stamped = [stamper.stamp({"type": "metrics", "step": i}) for i in range(3)]
    assert [m["seq"] for m in stamped] == [1, 2, 3]
    assert all(m["run_id"] == "run-1" and m["type"] == "metrics" for m in stamped)
    assert stamped[0]["t"] <= stamped[2]["t"]


@pytest.mark.parametrize("shape", [(5, 7), (6, 4, 3), (3, 9, 4)])
def test_png_round_trip_matches_pillow(shape):
    Image = pytest.importorskip("PIL.Image")
    pixels = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    image = protocol.encode_image(pixels)
    assert (image["h"], image["w"]) == shape[:2]
    decoded = np.array(Image.open(io.BytesIO(base64.b64decode(image["png"]))))
    np.testing.assert_array_equal(decoded, pixels)
    np.testing.assert_array_equal(protocol.decode_image(image), pixels)


def test_float_images_are_scaled_from_unit_range():
    image = protocol.encode_image(torch.tensor([[0.0, 0.5, 1.0, 2.0]]))
    np.testing.assert_array_equal(protocol.decode_image(image), [[0, 128, 255, 255]])


def test_jsonable_handles_non_finite_numpy_and_tensors():
    value = protocol.jsonable({"a": np.float32(1.5), "b": torch.tensor([1.0, float("nan")]), (1, 2): [np.int64(3)]})
    assert value == {"a": 1.5, "b": [1.0, "nan"], "1,2": [3]}
    json.dumps(value)  # must not raise
    assert protocol.clean_float(math.inf) == "inf" and protocol.clean_float(-math.inf) == "-inf"
    assert protocol.clean_float(0.123456789) == 0.123457


def test_downsample_keeps_ends_and_bounds_length():
    points = list(range(10_000))
    thin = protocol.downsample(points, 100)
    assert len(thin) <= 100 and thin[0] == 0 and thin[-1] == 9_999
    assert protocol.downsample([1, 2, 3], 100) == [1, 2, 3]


def test_boundary_neuron_maps_travel_as_thumbnails_sampled_from_the_grid():
    from types import SimpleNamespace

    from server.protocol import NEURON_MAP_MAX, boundary_message, decode_image

    grid = np.linspace(-1, 1, 64, dtype=np.float32)
    unit = np.tile(grid, (64, 1))  # a unit whose output grows from left (-1) to right (+1)
    boundary = SimpleNamespace(probs=np.full((64, 64), 0.5, np.float32), predicted=np.zeros((64, 64), np.uint8),
                               neuron_maps={"h": np.stack([unit, -unit])}, extent=(-1, 1, -1, 1))
    neurons = boundary_message(3, boundary, np.zeros((0, 3)))["neurons"]
    assert len(neurons) == 2
    for n in neurons:
        image = decode_image(n["map"])
        assert image.shape == (NEURON_MAP_MAX, NEURON_MAP_MAX)
        # the range of the map sent: the sample skips the first column (-1) and keeps the last (+1)
        assert sorted([abs(n["lo"]), abs(n["hi"])]) == pytest.approx([float(-grid[1]), 1.0], rel=1e-5)
    left_to_right = decode_image(neurons[0]["map"])[0].astype(int)
    expected = np.round((grid[1::2] + 1) * 127.5).astype(int)  # every other cell, from the middle of each pair
    assert np.abs(left_to_right - expected).max() <= 1
    assert (decode_image(neurons[1]["map"])[0].astype(int) + left_to_right).max() <= 256  # the mirrored unit
