"""Inpainting compute on a tiny random pipeline (2-4 steps, one thread)."""

import numpy as np
import pytest
import torch

from app import api
from plugins.diffusion_common import editing as D
from plugins.inpaint import compute as I


@pytest.mark.parametrize("method", ["blend", "repaint", "copaint", "copaint-tt"])
def test_each_method_runs_and_keeps_pixels_outside_the_mask(tiny_pipe, scene, method):
    img, mask = scene
    steps = []
    res = I.inpaint(tiny_pipe, img, mask, "a blue circle",
                    I.InpaintSettings(method=method, num_steps=3, resamplings=2),
                    progress=lambda i, n, m: steps.append((i, n)))
    assert res.image.shape == img.shape and res.image.dtype == np.uint8
    assert np.array_equal(res.image[~mask], img[~mask])
    assert not np.array_equal(res.image[mask], img[mask])  # something was painted
    assert steps and steps[-1][0] == steps[-1][1] == res.stats["reverse_steps"]
    assert res.mask.shape == (64, 64) and res.mask[mask].min() == 255 and res.mask[~mask].max() == 0


def test_feathered_edge_blends_inside_the_mask_only():
    orig = np.zeros((16, 16, 3), np.uint8)
    new = np.full((16, 16, 3), 200, np.uint8)
    m = np.zeros((16, 16), bool)
    m[4:12, 4:12] = True
    out = D.composite(orig, new, m, feather=2)
    assert np.array_equal(out[~m], orig[~m])
    assert out[4, 8, 0] < out[6, 8, 0] <= out[8, 8, 0] == 200  # ramps up from the edge inward
    hard = D.composite(orig, new, m, feather=0)
    assert np.array_equal(hard[m], new[m])


def test_mask_to_latent_dilation_covers_every_masked_pixel():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = np.zeros((64, 64), np.float32)
        for _k in range(3):
            y, x = rng.integers(0, 64, 2)
            m[y : y + rng.integers(1, 5), x : x + rng.integers(1, 5)] = 1
        lat = D.latent_mask(torch.from_numpy(m), 8)[0, 0].numpy()
        up = np.kron(lat, np.ones((8, 8)))
        assert (up[m > 0] == 1).all()
        assert lat.sum() <= (m > 0).sum()
    # a one-pixel stroke still marks its latent cell (nearest sampling at cell centres would miss it)
    thin = np.zeros((64, 64), np.float32)
    thin[:, 1] = 1
    assert D.latent_mask(torch.from_numpy(thin), 8)[0, 0, :, 0].min() == 1
    nearest = torch.nn.functional.interpolate(torch.from_numpy(thin)[None, None], size=(8, 8), mode="nearest")
    assert nearest.sum() == 0


def test_copaint_known_region_loss_decreases(tiny_pipe, scene):
    img, mask = scene
    res = I.inpaint(tiny_pipe, img, mask, "a red square", I.InpaintSettings(method="copaint", num_steps=4))
    hist = res.stats["known_loss"]
    assert len(hist) == 4
    for before, after in hist:
        assert after <= before
    assert sum(a for _, a in hist) < sum(b for b, _ in hist)
    assert hist[-1][1] < hist[0][0]
    # with zero gradient steps CoPaint is plain DDIM from the same start (no optimisation at all)
    plain = I.inpaint(tiny_pipe, img, mask, "a red square", I.InpaintSettings(method="copaint", num_steps=4,
                                                                                grad_steps=0))
    assert "known_loss" in plain.stats and plain.stats["known_loss"] == []
    assert not np.array_equal(plain.raw, res.raw)


def test_copaint_nan_guard_terminates(tiny_pipe, scene):
    img, mask = scene
    # an absurd rate makes every candidate overflow to inf/NaN: each search stops after the cap
    res = I.inpaint(tiny_pipe, img, mask, "", I.InpaintSettings(method="copaint", num_steps=2, lr=1e38,
                                                                  smart_lr=False, max_backoff=3))
    assert res.stats["rejected"] == 2 and res.stats["backoffs"] == 2 * 4
    assert np.array_equal(res.image[~mask], img[~mask])


def test_jump_schedules_match_repaint_counts():
    seq = I.jump_schedule(250, 10, 10)
    rev = sum(1 for a, b in zip(seq, seq[1:]) if b > a)
    fwd = sum(1 for a, b in zip(seq, seq[1:]) if b < a)
    assert (len(seq), rev, fwd) == (4571, 2410, 2160)
    assert seq[0] == 0 and seq[-1] == 250
    assert all(abs(a - b) == 1 for a, b in zip(seq, seq[1:]))
    assert I.jump_schedule(5, 10, 10) == [0, 1, 2, 3, 4, 5]
    tt = I.jump_schedule(25, 1, 2)
    assert sum(1 for a, b in zip(tt, tt[1:]) if b > a) == 25 + 24


def test_inpainting_checkpoint_uses_the_inpaint_pipeline(tiny_inpaint_pipe, scene):
    img, mask = scene
    res = I.inpaint(tiny_inpaint_pipe, img, mask, "a blue circle", I.InpaintSettings(method="copaint", num_steps=2))
    assert res.settings.method == "checkpoint" and any("9-channel" in n for n in res.notes)
    assert np.array_equal(res.image[~mask], img[~mask])
    with pytest.raises(ValueError, match="9 input channels"):
        I.inpaint(_plain(tiny_inpaint_pipe), img, mask, "", I.InpaintSettings(method="checkpoint", num_steps=2))


def _plain(pipe9):
    from diffusers import UNet2DConditionModel

    cfg = dict(pipe9.unet.config)
    cfg["in_channels"] = 4
    p = pipe9.__class__(**pipe9.components)
    p.unet = UNet2DConditionModel.from_config(cfg)
    return p


def test_larger_image_keeps_its_size_and_exact_outside(tiny_pipe, scene):
    from PIL import Image

    img, mask = scene
    big = np.asarray(Image.fromarray(img).resize((128, 128)))
    bmask = np.kron(mask, np.ones((2, 2), bool))
    res = I.inpaint(tiny_pipe, big, bmask, "", I.InpaintSettings(method="blend", num_steps=2))
    assert res.image.shape == (128, 128, 3)
    assert np.array_equal(res.image[~bmask], big[~bmask])
    assert any("resized" in n for n in res.notes)


def test_bad_inputs(tiny_pipe, scene, tmp_path):
    img, mask = scene
    s = I.InpaintSettings(method="blend", num_steps=2)
    with pytest.raises(ValueError, match="mask is 32x32 but the image is 64x64.*resize"):
        I.inpaint(tiny_pipe, img, np.ones((32, 32), bool), "", s)
    small = np.zeros((32, 32), bool)
    small[8:20, 8:20] = True
    ok = I.inpaint(tiny_pipe, img, small, "", s, resize_mask=True)  # the offered resize
    assert ok.mask.shape == (64, 64) and ok.mask[16:40, 16:40].min() == 255
    with pytest.raises(ValueError, match="mask is empty"):
        I.inpaint(tiny_pipe, img, np.zeros((64, 64), bool), "", s)
    with pytest.raises(ValueError, match="covers the whole image"):
        I.inpaint(tiny_pipe, img, np.ones((64, 64), bool), "", s)
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"\x00\x01 definitely not a png")
    with pytest.raises(ValueError, match="not an image"):
        I.inpaint(tiny_pipe, str(bad), mask, "", s)
    with pytest.raises(ValueError, match="not an image"):
        I.inpaint(tiny_pipe, img, str(bad), "", s)
    with pytest.raises(ValueError, match="unknown inpainting method"):
        I.inpaint(tiny_pipe, img, mask, "", I.InpaintSettings(method="magic"))
    with pytest.raises(ValueError, match="lr must be"):
        I.inpaint(tiny_pipe, img, mask, "", I.InpaintSettings(lr=float("nan")))


def test_cancel(tiny_pipe, scene):
    img, mask = scene
    with pytest.raises(api.Cancelled):
        I.inpaint(tiny_pipe, img, mask, "", I.InpaintSettings(method="blend", num_steps=4), is_cancelled=lambda: True)


def test_copaint_on_a_v_prediction_model(tiny_vpred_pipe, scene):
    img, mask = scene
    res = I.inpaint(tiny_vpred_pipe, img, mask, "a red square", I.InpaintSettings(method="copaint", num_steps=3))
    assert all(after <= before for before, after in res.stats["known_loss"])
    assert np.array_equal(res.image[~mask], img[~mask])
