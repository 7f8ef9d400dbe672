"""Augmentation: each op against a torch reference, the Augmenter's randomness and its no-op path."""

from __future__ import annotations

import pytest
import torch

from server.datasets import Augmenter, DataError
from server.datasets.augment import rotate, translate
from server.schemas import AugmentSpec


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def asymmetric(n: int = 256, c: int = 1, h: int = 12, w: int = 12) -> torch.Tensor:
    """Images no flip or shift maps onto themselves: a ramp plus noise, distinct per example."""
    ramp = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w) / (h * w)
    return ramp + 0.01 * torch.rand(n, c, h, w, generator=gen(99))


def reference_shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[i, j] = img[i - dy, j - dx] with zeros outside, via torch.roll and masks."""
    out = torch.roll(img, shifts=(dy, dx), dims=(-2, -1)).clone()
    if dy > 0:
        out[..., :dy, :] = 0
    elif dy < 0:
        out[..., dy:, :] = 0
    if dx > 0:
        out[..., :, :dx] = 0
    elif dx < 0:
        out[..., :, dx:] = 0
    return out


def test_nothing_enabled_returns_the_input_itself():
    x = torch.rand(4, 1, 8, 8)
    aug = Augmenter(AugmentSpec(), "image")
    assert not aug.enabled and aug(x, gen()) is x
    assert Augmenter(AugmentSpec(), "2d")(x, gen()) is x


def test_hflip_flips_about_half_exactly_like_torch_flip():
    x = asymmetric()
    out = Augmenter(AugmentSpec(hflip=True), "image")(x, gen(1))
    flipped = (out == x.flip(-1)).flatten(1).all(dim=1)
    kept = (out == x).flatten(1).all(dim=1)
    assert torch.all(flipped ^ kept)  # every example is exactly one of the two
    assert 0.35 < flipped.float().mean() < 0.65


def test_same_generator_seed_same_augmentation():
    spec = AugmentSpec(hflip=True, crop_padding=2, rotate_degrees=10, noise_std=0.1)
    x = asymmetric(16)
    aug = Augmenter(spec, "image")
    a, b, c = aug(x, gen(5)), aug(x, gen(5)), aug(x, gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype


def test_input_is_never_modified():
    x = asymmetric(8)
    before = x.clone()
    Augmenter(AugmentSpec(hflip=True, crop_padding=3, rotate_degrees=30, noise_std=1.0), "image")(x, gen())
    assert torch.equal(x, before)


@pytest.mark.parametrize(("dy", "dx"), [(0, 0), (2, -1), (-3, 3), (1, 0), (0, -2)])
def test_translate_matches_roll_with_zero_fill(dy, dx):
    x = torch.rand(1, 3, 7, 9)
    out = translate(x, torch.tensor([dy]), torch.tensor([dx]), pad=3)
    assert torch.equal(out, reference_shift(x, dy, dx))


def test_random_crop_is_a_shift_within_the_padding():
    pad = 2
    x = asymmetric(64)
    out = Augmenter(AugmentSpec(crop_padding=pad), "image")(x, gen(3))
    shifts = [(dy, dx) for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1)]
    seen = set()
    for i in range(len(x)):
        matches = [s for s in shifts if torch.equal(out[i], reference_shift(x[i], *s))]
        assert len(matches) == 1, f"example {i} is not a shifted copy"
        seen.add(matches[0])
    assert len(seen) > 10  # offsets really vary


def test_crop_keeps_a_centred_object_whole():
    x = torch.zeros(32, 1, 16, 16)
    x[:, :, 6:10, 6:10] = 1.0
    out = Augmenter(AugmentSpec(crop_padding=4), "image")(x, gen())
    assert torch.equal(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))


def test_rotate_by_quarter_turns_matches_rot90():
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(rotate(x, torch.tensor([90.0, 90.0])), torch.rot90(x, 1, dims=(-2, -1)))
    torch.testing.assert_close(rotate(x, torch.tensor([-90.0, -90.0])), torch.rot90(x, -1, dims=(-2, -1)))
    torch.testing.assert_close(rotate(x, torch.zeros(2)), x)


def test_rotate_half_turn_of_a_non_square_image():
    x = torch.rand(1, 1, 6, 10)
    torch.testing.assert_close(rotate(x, torch.tensor([180.0])), x.flip(-1).flip(-2))


def test_random_rotation_stays_within_the_range():
    # A vertical bar through the centre: its angle after rotation is measured by the
    # principal axis of its pixel mass and must lie within +-degrees of vertical.
    x = torch.zeros(200, 1, 33, 33)
    x[:, :, 4:29, 15:18] = 1.0
    out = Augmenter(AugmentSpec(rotate_degrees=20), "image")(x, gen(7))
    rows, cols = torch.meshgrid(torch.arange(33.0), torch.arange(33.0), indexing="ij")
    w = out[:, 0]
    m = w.sum(dim=(1, 2))
    r0, c0 = (w * rows).sum(dim=(1, 2)) / m, (w * cols).sum(dim=(1, 2)) / m
    drr = (w * (rows - r0[:, None, None]) ** 2).sum(dim=(1, 2))
    dcc = (w * (cols - c0[:, None, None]) ** 2).sum(dim=(1, 2))
    drc = (w * (rows - r0[:, None, None]) * (cols - c0[:, None, None])).sum(dim=(1, 2))
    tilt = 0.5 * torch.atan2(2 * drc, drr - dcc).rad2deg()  # 0 for a vertical bar
    assert tilt.abs().max() <= 21.0
    assert tilt.abs().max() > 10.0 and tilt.std() > 5.0  # and it really rotates, both ways
    assert (tilt > 0).any() and (tilt < 0).any()


def test_noise_has_the_requested_std():
    x = torch.zeros(1000, 3, 8, 8)
    out = Augmenter(AugmentSpec(noise_std=0.3), "image")(x, gen())
    assert abs(out.std().item() - 0.3) < 0.01 and abs(out.mean().item()) < 0.01


def test_points_take_noise_only():
    x = torch.rand(5000, 2)
    out = Augmenter(AugmentSpec(noise_std=0.5), "2d")(x, gen())
    assert out.shape == x.shape
    assert abs((out - x).std().item() - 0.5) < 0.02
    with pytest.raises(DataError, match=r"augmentation: hflip, rotate_degrees only apply to images.*Fix"):
        Augmenter(AugmentSpec(hflip=True, rotate_degrees=5), "2d")
    with pytest.raises(DataError, match="crop_padding"):
        Augmenter(AugmentSpec(crop_padding=2), "tabular")


def test_empty_batch_passes_through():
    x = torch.zeros(0, 1, 8, 8)
    assert Augmenter(AugmentSpec(hflip=True, noise_std=1.0), "image")(x, gen()).shape == (0, 1, 8, 8)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_gpu_with_a_gpu_generator():
    x = asymmetric(64).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    spec = AugmentSpec(hflip=True, crop_padding=2, rotate_degrees=15, noise_std=0.1)
    out = Augmenter(spec, "image")(x, g)
    assert out.is_cuda and out.shape == x.shape
    g2 = torch.Generator(device="cuda").manual_seed(0)
    assert torch.equal(out, Augmenter(spec, "image")(x, g2))
