"""h-Edit compute on a tiny random pipeline (few steps, one thread)."""

import math
import warnings

import numpy as np
import pytest
import torch

from app import api
from plugins.diffusion_common import editing as D
from plugins.h_edit import compute as C
from plugins.h_edit.p2p import align_tokens, prompts_alignable

SRC = "a red circle"
TAR = "a blue circle"


def _x0(pipe, img):
    return D.vae_encode(pipe, D.image_to_tensor(img))


def test_editing_coefficient_is_dmu_deps_and_negative(tiny_pipe):
    sched = D.Schedule.from_pipe(tiny_pipe, 10)
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    e = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    d = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    for i in (0, 4, 9):
        for eta in (0.0, 1.0):
            k = sched.k_coef(i, eta)
            assert k < 0
            diff = D.step_mean(sched, i, x, e + d, eta) - D.step_mean(sched, i, x, e, eta)
            assert torch.allclose(diff, k * d, atol=1e-10)


@pytest.mark.parametrize("kind", ["random", "deterministic"])
def test_replaying_the_inversion_reproduces_every_latent(tiny_pipe, test_image, kind):
    sched = D.Schedule.from_pipe(tiny_pipe, 5)
    emb = D.encode_prompts(tiny_pipe, ["", SRC])
    eps = D.EpsModel(tiny_pipe, {"null": emb[:1], "src": emb[1:]})
    x0 = _x0(tiny_pipe, test_image)
    inv = C.invert(tiny_pipe, x0, sched, eps, kind, w_orig=1.0, seed=3)
    eta = 1.0 if kind == "random" else 0.0
    assert torch.allclose(inv.x0, x0, atol=1e-6)
    x = inv.latents[0].clone()
    for i in range(len(sched)):
        e = eps(sched.t_model(i), [(x, "src")])[0]
        x = D.step_mean(sched, i, x, e, eta) + inv.residuals[i]
        assert torch.equal(x, inv.latents[i + 1]), f"step {i}"
    if kind == "random":  # the inverted path holds independent noisy latents
        assert not torch.allclose(inv.latents[0], inv.latents[1], atol=1e-2)


@pytest.mark.parametrize("variant", ["explicit", "implicit"])
@pytest.mark.parametrize("inversion", ["random", "deterministic"])
def test_same_prompt_equal_weights_returns_the_input_latent(tiny_pipe, test_image, variant, inversion):
    s = C.HEditSettings(variant=variant, inversion=inversion, num_steps=4, w_src_edit=6.0, w_edit=6.0,
                        inner_steps=2, lambda_rec=0.1, skip=0)
    res = C.h_edit(tiny_pipe, test_image, SRC, SRC, s, cache=None)
    x0 = _x0(tiny_pipe, test_image)
    assert (res.latent - x0).abs().max().item() < 1e-6
    # the image then differs from the input only by the VAE round trip, measured separately
    with torch.no_grad():
        roundtrip = D.tensor_to_uint8(D.vae_decode(tiny_pipe, x0))
    assert np.abs(res.image.astype(int) - roundtrip.astype(int)).max() <= 1
    vae_err = np.abs(roundtrip.astype(int) - test_image.astype(int)).mean()
    assert vae_err > 0  # random VAE: the round trip is not the identity, and that is not h-Edit's doing


def test_different_prompts_change_the_edit_and_p2p_is_on_by_default(tiny_pipe, test_image):
    s = C.HEditSettings(variant="implicit", num_steps=4)
    res = C.h_edit(tiny_pipe, test_image, SRC, TAR, s, cache=None)
    x0 = _x0(tiny_pipe, test_image)
    assert res.settings.attention == "p2p" and res.settings.skip == 0
    assert res.stats["p2p_cross_replaced"] > 0 and res.stats["p2p_self_replaced"] > 0
    assert (res.latent - x0).abs().max().item() > 1e-3
    # no attention control: the paper's scripts skip the first 30 % of the steps
    s2 = C.HEditSettings(variant="explicit", num_steps=10, attention="none")
    res2 = C.h_edit(tiny_pipe, test_image, SRC, TAR, s2, cache=None)
    assert res2.settings.skip == 3 and res2.stats["p2p_cross_replaced"] == 0


def test_implicit_with_k1_matches_explicit_form_at_the_candidate(tiny_pipe, test_image):
    """Implicit h-Edit step = reconstruction step, then k * f evaluated at the candidate."""
    s = C.HEditSettings(variant="implicit", num_steps=1, attention="none", skip=0)
    res = C.h_edit(tiny_pipe, test_image, SRC, TAR, s, cache=None)
    sched = D.Schedule.from_pipe(tiny_pipe, 1)
    emb = D.encode_prompts(tiny_pipe, ["", SRC, TAR])
    eps = D.EpsModel(tiny_pipe, {"null": emb[:1], "src": emb[1:2], "tar": emb[2:]})
    inv = C.invert(tiny_pipe, _x0(tiny_pipe, test_image), sched, eps, "random", 1.0, seed=0)
    x = inv.latents[0]
    base = D.step_mean(sched, 0, x, eps(sched.t_model(0), [(x, "src")])[0], 1.0) + inv.residuals[0]
    e_null, e_src, e_tar = eps(0, [(base, "null"), (base, "src"), (base, "tar")])
    f = (e_null + 7.5 * (e_tar - e_null)) - (e_null + 5.0 * (e_src - e_null))
    expected = base + sched.k_coef(0, 1.0) * f
    assert torch.allclose(res.latent, expected, atol=1e-5)


def test_baselines_run_and_differ_from_h_edit(tiny_pipe, test_image):
    out = {}
    for v in ("explicit", "baseline-ef", "baseline-ddim"):
        r = C.h_edit(tiny_pipe, test_image, SRC, TAR, C.HEditSettings(variant=v, num_steps=3), cache=None)
        assert r.image.shape == (64, 64, 3) and r.image.dtype == np.uint8
        out[v] = r.latent
    assert not torch.allclose(out["explicit"], out["baseline-ef"])
    assert not torch.allclose(out["baseline-ef"], out["baseline-ddim"])


def _mean_dist(img, colour, region=None):
    x = img.astype(np.float32) / 255.0
    d = ((x - np.asarray(colour)) ** 2).sum(-1)
    return float(d[region].mean() if region is not None else d.mean())


def test_colour_reward_moves_the_region_toward_the_colour(tiny_pipe, test_image):
    from plugins.h_edit.rewards import COLOURS

    region = np.zeros((64, 64), bool)
    region[10:50, 12:54] = True
    base = C.h_edit(tiny_pipe, test_image, SRC, "", C.HEditSettings(num_steps=4, reward="colour:blue",
                    reward_weight=0.0), region_mask=region, cache=None)
    edit = C.h_edit(tiny_pipe, test_image, SRC, "", C.HEditSettings(num_steps=4, reward="colour:blue",
                    reward_weight=0.3), region_mask=region, cache=None)
    blue = COLOURS["blue"]
    assert _mean_dist(edit.image, blue, region) < _mean_dist(base.image, blue, region) - 0.01
    # outside the region the original pixels are kept exactly
    assert np.array_equal(edit.image[~region], test_image[~region])
    assert edit.mask is not None and edit.mask.shape == (64, 64)


def test_nan_reward_is_dropped_with_a_warning(tiny_pipe, test_image):
    def bad_reward(img):
        return (img * float("nan")).sum(dim=(1, 2, 3))

    with pytest.warns(RuntimeWarning, match="not finite"):
        res = C.h_edit(tiny_pipe, test_image, SRC, "", C.HEditSettings(num_steps=3), reward_fn=bad_reward,
                       cache=None)
    assert res.stats["reward_dropped"]
    assert any("dropped" in n for n in res.notes)
    assert np.isfinite(res.latent.numpy()).all()


def test_inversion_cache_hit_skips_the_inversion(tiny_pipe, test_image):
    cache = C.InversionCache()
    s = C.HEditSettings(num_steps=3)
    r1 = C.h_edit(tiny_pipe, test_image, SRC, TAR, s, cache=cache)
    r2 = C.h_edit(tiny_pipe, test_image, SRC, TAR, C.HEditSettings(num_steps=3, w_edit=9.0), cache=cache)
    assert not r1.stats["inversion_cached"] and r2.stats["inversion_cached"]
    assert cache.hits == 1 and cache.misses == 1
    assert r2.stats["unet_rows"] < r1.stats["unet_rows"] + 1  # rows counted are the edit's only
    # another source prompt or step count is a different inversion
    C.h_edit(tiny_pipe, test_image, "a red square", TAR, s, cache=cache)
    C.h_edit(tiny_pipe, test_image, SRC, TAR, C.HEditSettings(num_steps=4), cache=cache)
    assert cache.misses == 3
    # same key gives the same edit as recomputing
    r3 = C.h_edit(tiny_pipe, test_image, SRC, TAR, s, cache=None)
    assert torch.equal(r1.latent, r3.latent)


def test_progress_preview_and_cancel(tiny_pipe, test_image):
    seen, previews = [], []
    C.h_edit(tiny_pipe, test_image, SRC, TAR, C.HEditSettings(num_steps=3, preview_every=1), cache=None,
             progress=lambda i, n, m: seen.append((i, n)), preview=previews.append)
    assert seen[-1][0] == seen[-1][1] and len(previews) == 3 and previews[0].shape == (64, 64, 3)
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(api.Cancelled):
        C.h_edit(tiny_pipe, test_image, SRC, TAR, C.HEditSettings(num_steps=5), cache=None, is_cancelled=cancel)


def test_image_of_another_size_is_resized_with_a_note(tiny_pipe, test_image):
    from PIL import Image

    big = np.asarray(Image.fromarray(test_image).resize((96, 80)))
    res = C.h_edit(tiny_pipe, big, SRC, TAR, C.HEditSettings(num_steps=2), cache=None)
    assert res.image.shape == (80, 96, 3)
    assert any("resized from 96x80" in n for n in res.notes)


def test_bad_inputs_have_clear_messages(tiny_pipe, test_image, tmp_path):
    with pytest.raises(ValueError, match="target prompt is empty"):
        C.h_edit(tiny_pipe, test_image, SRC, "  ", C.HEditSettings(num_steps=2), cache=None)
    with pytest.raises(ValueError, match="unknown variant"):
        C.h_edit(tiny_pipe, test_image, SRC, TAR, C.HEditSettings(variant="magic"), cache=None)
    with pytest.raises(ValueError, match="unknown reward"):
        C.h_edit(tiny_pipe, test_image, SRC, TAR, C.HEditSettings(num_steps=2, reward="beauty"), cache=None)
    with pytest.raises(ValueError, match="unknown colour"):
        C.h_edit(tiny_pipe, test_image, SRC, TAR, C.HEditSettings(num_steps=2, reward="colour:blurple"), cache=None)
    with pytest.raises(ValueError, match="region mask is 32x32 but the image is 64x64"):
        C.h_edit(tiny_pipe, test_image, SRC, TAR, C.HEditSettings(num_steps=2),
                 region_mask=np.ones((32, 32), bool), cache=None)
    with pytest.raises(ValueError, match="region mask is empty"):
        C.h_edit(tiny_pipe, test_image, SRC, TAR, C.HEditSettings(num_steps=2),
                 region_mask=np.zeros((64, 64), bool), cache=None)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="not an image"):
        C.h_edit(tiny_pipe, str(bad), SRC, TAR, C.HEditSettings(num_steps=2), cache=None)
    with pytest.raises(ValueError, match="skip must be between"):
        C.h_edit(tiny_pipe, test_image, SRC, TAR, C.HEditSettings(num_steps=4, skip=4), cache=None)

    class NoEncoderVAE:
        config = tiny_pipe.vae.config
        encoder = None

        def encode(self, x):  # pragma: no cover - must not be reached
            raise AssertionError

    class P:
        unet, tokenizer, text_encoder, scheduler = (tiny_pipe.unet, tiny_pipe.tokenizer,
                                                    tiny_pipe.text_encoder, tiny_pipe.scheduler)
        vae = NoEncoderVAE()

    with pytest.raises(ValueError, match="no VAE encoder"):
        C.h_edit(P(), test_image, SRC, TAR, C.HEditSettings(num_steps=2), cache=None)


def test_token_alignment():
    mapper, alpha, equal = align_tokens([0, 5, 6, 7, 1], [0, 5, 9, 9, 7, 1], 8)
    assert not equal
    assert mapper[:2].tolist() == [0, 1] and alpha[:2].tolist() == [1.0, 1.0]
    assert alpha[2] == 0 and alpha[3] == 0  # new words keep their own maps
    assert mapper[4] == 3 and mapper[5] == 4  # 'circle' and the end token follow the source
    assert mapper[6] == 5 and alpha[6] == 1  # padding follows padding
    assert prompts_alignable([0, 5, 6, 1], [0, 5, 8, 1])
    assert not prompts_alignable([0, 5, 6, 1], [0, 5, 6, 1])
    assert not prompts_alignable([0, 5, 1], [0, 8, 9, 1])


def test_reward_registry_and_style_reward(tiny_pipe, test_image, tmp_path):
    from PIL import Image

    from plugins.h_edit import rewards as R

    with pytest.raises(ValueError, match="kebab-case"):
        R.register_reward("Bad Name", lambda a, r, p: None)
    R.register_reward("test-brightness", lambda a, r, p: (lambda img: img.mean(dim=(1, 2, 3))), replace=True)
    assert "test-brightness" in R.available_rewards()
    score = R.make_reward("test-brightness")
    assert score(torch.ones(2, 3, 4, 4)).shape == (2,)
    ref = tmp_path / "ref.png"
    Image.fromarray(np.full((16, 16, 3), (20, 60, 230), np.uint8)).save(ref)
    style = R.make_reward(f"style:{ref}")
    img = D.image_to_tensor(test_image)
    blueish = D.image_to_tensor(np.full((64, 64, 3), (20, 60, 230), np.uint8))
    assert style(blueish).item() > style(img).item()
    assert abs(style(blueish).item()) < 1e-6
    assert R.parse_colour("#ff0000") == (1.0, 0.0, 0.0)
    assert R.parse_colour("0,0,255") == (0.0, 0.0, 1.0)


def test_v_prediction_models_are_converted_to_noise_predictions(tiny_vpred_pipe, test_image):
    pipe = tiny_vpred_pipe
    emb = D.encode_prompts(pipe, [SRC])
    eps = D.EpsModel(pipe, {"src": emb})
    x = torch.randn(1, 4, 8, 8)
    t = 501
    with torch.no_grad():
        v = pipe.unet(x, torch.tensor([t]), encoder_hidden_states=emb).sample
        got = eps(t, [(x, "src")])[0]
    ab = float(pipe.scheduler.alphas_cumprod[t])
    assert torch.allclose(got, math.sqrt(ab) * v + math.sqrt(1 - ab) * x, atol=1e-6)
    # round trip: the x0 implied by the converted eps is the x0 implied by v
    x0_from_eps = D.predict_x0(x, got, ab)
    assert torch.allclose(x0_from_eps, math.sqrt(ab) * x - math.sqrt(1 - ab) * v, atol=1e-5)
    # and the h-Edit identity still holds
    s = C.HEditSettings(variant="implicit", num_steps=3, w_src_edit=5.0, w_edit=5.0, skip=0)
    res = C.h_edit(pipe, test_image, SRC, SRC, s, cache=None)
    assert (res.latent - _x0(pipe, test_image)).abs().max().item() < 1e-6
