"""PNGs shared with AUTOMATIC1111 and ComfyUI: theirs are restored whole (prompt, negative, seed,
steps, CFG, sampler, schedule, size), every sampler and schedule name maps both ways, ours are
written in A1111's names and fields and read by an independent reader (sd-parsers), and
``run TOOL --params-from FILE.png`` starts from a PNG's parameters."""

from __future__ import annotations

import io
import json
import pytest
from PIL import Image, PngImagePlugin

from plugins.diffusion_common.schedulers import SCHEDULE_NAMES, SCHEDULER_NAMES
from storage import pngmeta
from storage.pngmeta import read_png_metadata

A1111_TEXT = (
    "a tiny red star, (best quality:1.2)\nin the top left\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3735928559, Size: 512x768, "
    "Model hash: e6bb9ea85b, Model: sd_xl_base_1.0, Clip skip: 2, "
    'Lora hashes: "add_detail: 7c6bad76eb54", Version: v1.10.1'
)

COMFY_GRAPH = {
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 156680208700286, "steps": 30, "cfg": 7.0, "sampler_name": "dpmpp_2m_sde",
        "scheduler": "karras", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
        "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 640, "height": 448, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "purple galaxy bottle", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "ComfyUI"}},
}


def _png(texts: dict[str, str]) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in texts.items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _tool():
    from plugins.text_to_image.plugin import studio_tools

    return studio_tools()[0]


def test_an_a1111_png_is_restored_whole():
    meta = read_png_metadata(_png({"parameters": A1111_TEXT}))
    tool, params, seed = meta.restore()
    assert tool is None and seed == 3735928559
    assert params == {"prompt": "a tiny red star, (best quality:1.2)\nin the top left",
                      "negative_prompt": "blurry, lowres", "steps": 28, "guidance": 6.5,
                      "scheduler": "dpmpp-2m-karras", "schedule": "default", "width": 512, "height": 768,
                      "clip_skip": 1}
    assert meta.restore_notes() == []
    # the tool takes every one of them as they are
    t = _tool()
    assert {k: t.param(k).validate(v) for k, v in params.items()} == params
    # "Euler a" restores as Euler ancestral, the schedule type separately; old-style labels too
    for text, want in (("Sampler: Euler a", ("euler-a", "default")),
                       ("Sampler: Euler, Schedule type: Exponential", ("euler", "exponential")),
                       ("Sampler: DPM++ 2M SDE Karras", ("dpmpp-2m-sde", "karras")),
                       ("Sampler: DPM++ 2M Karras", ("dpmpp-2m-karras", "default")),
                       ("Sampler: UniPC, Schedule type: SGM Uniform", ("unipc", "trailing")),
                       ("Sampler: PLMS", ("pndm", "default"))):
        m = read_png_metadata(_png({"parameters": f"p\nSteps: 5, {text}, CFG scale: 3, Seed: 1"}))
        _, got, _ = m.restore()
        assert (got["scheduler"], got["schedule"]) == want, text
    inexact = read_png_metadata(_png({"parameters": "p\nSteps: 5, Sampler: DPM adaptive, CFG scale: 3, Seed: 1"}))
    assert inexact.restore()[1]["scheduler"] == "euler"
    assert "no diffusers solver" in inexact.restore_notes()[0]


def test_a_comfyui_workflow_png_is_restored_whole():
    png = _png({"prompt": json.dumps(COMFY_GRAPH), "workflow": json.dumps({"nodes": [], "links": []})})
    meta = read_png_metadata(png)
    assert meta.source == "comfyui"
    tool, params, seed = meta.restore()
    assert tool is None and seed == 156680208700286
    assert params == {"prompt": "purple galaxy bottle", "negative_prompt": "text, watermark", "steps": 30,
                      "guidance": 7.0, "scheduler": "dpmpp-2m-sde", "schedule": "karras", "width": 640,
                      "height": 448}
    t = _tool()
    assert {k: t.param(k).validate(v) for k, v in params.items()} == params
    # img2img graphs keep their denoise as the strength
    graph = json.loads(json.dumps(COMFY_GRAPH))
    graph["3"]["inputs"].update(denoise=0.6, sampler_name="euler_ancestral", scheduler="simple")
    _, p2, _ = read_png_metadata(_png({"prompt": json.dumps(graph)})).restore()
    assert (p2["strength"], p2["scheduler"], p2["schedule"]) == (0.6, "euler-a", "trailing")


@pytest.mark.parametrize("scheduler", [s for s in SCHEDULER_NAMES if s != "default"])
def test_every_studio_scheduler_and_schedule_maps_both_ways(scheduler):
    for schedule in SCHEDULE_NAMES:
        want = ("dpmpp-2m-karras", "default") if (scheduler, schedule) == ("dpmpp-2m", "karras") else \
            (scheduler, schedule)
        if scheduler == "dpmpp-2m-karras" and schedule in ("default", "karras"):
            want = ("dpmpp-2m-karras", "default")
        elif scheduler == "dpmpp-2m-karras":
            continue  # the Karras pair with another schedule is not a combination anyone writes
        sampler, stype = pngmeta.sampler_to_a1111(scheduler, schedule)
        back = pngmeta.sampler_from_a1111(sampler, stype)
        assert back[:2] == want and back[2] == [], (scheduler, schedule, sampler, stype)
        cs, csched = pngmeta.sampler_to_comfyui(scheduler, schedule)
        back = pngmeta.sampler_from_comfyui(cs, csched)
        assert back[:2] == want, (scheduler, schedule, cs, csched)


def test_every_a1111_and_comfyui_name_lands_on_a_studio_name():
    for table in (pngmeta.A1111_TO_STUDIO, pngmeta.COMFYUI_TO_STUDIO):
        assert {v[0] for v in table.values()} <= set(SCHEDULER_NAMES)
    for table in (pngmeta.A1111_SCHEDULE_TO_STUDIO, pngmeta.COMFYUI_SCHEDULE_TO_STUDIO):
        assert {v[0] for v in table.values()} <= set(SCHEDULE_NAMES)
    # A1111 1.10's and ComfyUI 0.8's full lists
    a1111 = ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a",
             "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart", "DDIM", "DDIM CFG++",
             "PLMS", "UniPC", "LCM"]
    a1111_sched = ["Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal",
                   "Align Your Steps", "Simple", "Normal", "DDIM", "Beta"]
    comfy = ["euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
             "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
             "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
             "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
             "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
             "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde",
             "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2"]
    comfy_sched = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                   "linear_quadratic", "kl_optimal"]
    for name in a1111:
        assert pngmeta.sampler_from_a1111(name)[0] in SCHEDULER_NAMES, name
    for name in a1111_sched:
        assert pngmeta.sampler_from_a1111("Euler", name)[1] in SCHEDULE_NAMES, name
    for name in comfy:
        assert pngmeta.sampler_from_comfyui(name)[0] in SCHEDULER_NAMES, name
    for name in comfy_sched:
        assert pngmeta.sampler_from_comfyui("euler", name)[1] in SCHEDULE_NAMES, name
    assert pngmeta.sampler_from_a1111("Nonesuch")[0] is None


# ---------------------------------------------------------------- our own PNGs, read by sd-parsers

def test_our_parameters_are_a1111s_and_sd_parsers_reads_them(studio_cli, tmp_path):
    sd_parsers = pytest.importorskip("sd_parsers")
    out = tmp_path / "out"
    res = studio_cli("run", "text-to-image", "--prompt", "a small red circle", "--negative-prompt", "blurry",
                     "--seed", "11", "--steps", "3", "--guidance", "4.5", "--scheduler", "dpmpp-2m",
                     "--schedule", "karras", "--out", str(out), "--session", str(tmp_path / "S"))
    assert res.exit_code == 0, res.stderr + res.stdout
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 2  # the picture and the trajectory strip
    image, strip = sorted(pngs, key=lambda p: Image.open(p).size[0])
    text = read_png_metadata(image).parameters_text
    settings = text.splitlines()[-1]
    labels = [part.split(":")[0].strip() for part in settings.split(", ")]
    assert labels[:8] == ["Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash", "Model"]
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in settings
    assert "Denoising strength" not in text and "dpmpp" not in text and "Backend" not in text
    info = sd_parsers.ParserManager().parse(str(image))
    assert info is not None and info.generator.name == "AUTOMATIC1111"
    sampler = info.samplers[0]
    assert sampler.name == "DPM++ 2M" and sampler.parameters["scheduler"] == "Karras"
    assert float(sampler.parameters["cfg_scale"]) == 4.5 and int(sampler.parameters["seed"]) == 11
    assert int(sampler.parameters["steps"]) == 3
    assert [p.value for p in sampler.prompts] == ["a small red circle"]
    assert [p.value for p in sampler.negative_prompts] == ["blurry"]
    assert sampler.model is not None and len(sampler.model.hash) == 10 and sampler.model.name == "default"
    from app.api import model_fingerprint
    from app.paths import resources_dir
    from plugins.diffusion_common.bundled import bundled_model

    # the bundled model's own fingerprint, shortened as A1111 does (the first 10 hex digits)
    assert model_fingerprint(bundled_model("default", resources_dir())).startswith(sampler.model.hash)
    assert info.metadata["Size"] == "64x64"
    # the trajectory strip describes the picture, not itself
    strip_text = read_png_metadata(strip).parameters_text
    with Image.open(strip) as im:
        assert im.size[0] > 64
    assert "Size: 64x64" in strip_text
    # and the same file restores the run whole
    _, params, seed = read_png_metadata(image).restore()
    assert (params["scheduler"], params["schedule"], params["guidance"], seed) == ("dpmpp-2m", "karras", 4.5, 11)


def test_run_params_from_a_png_with_explicit_options_winning(studio_cli, tmp_path):
    png = tmp_path / "a1111.png"
    png.write_bytes(_png({"parameters": "a small blue square\nNegative prompt: noise\n"
                                        "Steps: 2, Sampler: Euler a, CFG scale: 3.5, Seed: 99, Size: 64x64"}))
    out = tmp_path / "out"
    res = studio_cli("run", "text-to-image", "--params-from", str(png), "--steps", "3", "--json",
                     "--no-record-trajectory", "--out", str(out), "--session", str(tmp_path / "S"))
    assert res.exit_code == 0, res.stderr + res.stdout
    made = json.loads(res.stdout)
    assert made["seed"] == 99
    ours = read_png_metadata(next(out.glob("*.png"))).implicit
    p = ours["params"]
    assert (p["prompt"], p["negative_prompt"], p["guidance"], p["scheduler"], p["width"]) == \
        ("a small blue square", "noise", 3.5, "euler-a", 64)
    assert p["steps"] == 3  # the explicit option, not the PNG's 2
    # our own PNG round-trips the exact parameters; a PNG of another tool is refused
    again = studio_cli("run", "text-to-image", "--params-from", str(next(out.glob("*.png"))), "--json",
                       "--no-record-trajectory", "--session", str(tmp_path / "S"))
    assert again.exit_code == 0 and json.loads(again.stdout)["seed"] == 99
    missing = studio_cli("run", "text-to-image", "--params-from", str(tmp_path / "nope.png"))
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    empty = studio_cli("run", "text-to-image", "--params-from", str(plain))
    assert empty.exit_code == 2 and "holds no parameters" in empty.stderr
    other = tmp_path / "other.png"
    other.write_bytes(pngmeta.encode_png(Image.new("RGB", (4, 4)),
                                         implicit=pngmeta.our_json(tool_id="h-edit", params={"x": 1})))
    refused = studio_cli("run", "text-to-image", "--params-from", str(other))
    assert refused.exit_code == 2 and "made by 'h-edit'" in refused.stderr
