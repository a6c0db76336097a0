"""PNG parameter chunks (ours + A1111 + ComfyUI) and the CLI helpers."""

import io
import json

import pytest
from PIL import Image, PngImagePlugin

from storage import RunNotFoundError
from storage.cli_support import export_run, format_history
from storage.pngmeta import (
    format_parameters,
    parse_parameters,
    read_png_metadata,
    write_png_metadata,
)


def test_written_chunks_are_read_back_by_pillow_and_by_us(png):
    data = png(8, 6)
    params = {"prompt": "a red circle, on grass", "negative_prompt": "blurry", "steps": 20,
              "guidance_scale": 7.5, "scheduler": "ddim", "width": 8, "height": 6,
              "eta": 0.0, "nested": {"a": [1, 2]}}
    text = format_parameters(params, seed=42, model="resources/models/default",
                             model_hash="0123456789abcdef")
    assert text.splitlines()[0] == "a red circle, on grass"
    assert text.splitlines()[1] == "Negative prompt: blurry"
    # A1111's names and fields only: the sampler as A1111 names it, no internal parameters (eta)
    assert text.splitlines()[2] == ("Steps: 20, Sampler: DDIM, CFG scale: 7.5, Seed: 42, "
                                    "Size: 8x6, Model hash: 0123456789, Model: default")
    ours = {"format": "implicit-studio/1", "tool_id": "text-to-image", "params": params,
            "seed": 42}
    out = write_png_metadata(data, implicit=ours, parameters=text)
    with Image.open(io.BytesIO(out)) as im:  # still a valid PNG with the same pixels
        assert im.size == (8, 6)
        assert im.text["parameters"] == text
        assert json.loads(im.text["implicit_studio"])["params"] == params
        assert im.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    meta = read_png_metadata(out)
    assert meta.source == "implicit-studio"
    assert meta.restore() == ("text-to-image", params, 42)
    p = meta.parameters
    assert p["prompt"] == "a red circle, on grass" and p["negative_prompt"] == "blurry"
    assert (p["steps"], p["cfg_scale"], p["seed"], p["width"], p["height"]) == (20, 7.5, 42, 8, 6)
    assert p["sampler"] == "DDIM" and p["model_hash"] == "0123456789" and p["model"] == "default"
    # writing again replaces rather than duplicates
    again = write_png_metadata(out, parameters="x\nSteps: 1, Seed: 2, Size: 1x1")
    assert read_png_metadata(again).parameters_text == "x\nSteps: 1, Seed: 2, Size: 1x1"
    assert again.count(b"parameters") == 1


def test_reads_a1111_png_written_by_pillow(png):
    a1111 = (
        "masterpiece, (best quality:1.2), cat\nwearing a hat\n"
        "Negative prompt: lowres, bad anatomy\n"
        'Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3735928559, '
        'Size: 512x768, Model hash: e6bb9ea85b, Model: sd_xl_base_1.0, '
        'Lora hashes: "add_detail: 7c6bad76eb54, more: abc", Version: v1.9.4'
    )
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", a1111)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG", pnginfo=info)
    meta = read_png_metadata(buf.getvalue())
    assert meta.source == "a1111"
    p = meta.parameters
    assert p["prompt"] == "masterpiece, (best quality:1.2), cat\nwearing a hat"
    assert p["negative_prompt"] == "lowres, bad anatomy"
    assert p["steps"] == 28 and p["sampler"] == "DPM++ 2M" and p["schedule_type"] == "Karras"
    assert p["cfg_scale"] == 6.5 and p["seed"] == 3735928559
    assert (p["width"], p["height"]) == (512, 768)
    assert p["lora_hashes"] == "add_detail: 7c6bad76eb54, more: abc"
    assert p["version"] == "v1.9.4"
    tool, params, seed = meta.restore()
    assert tool is None and seed == 3735928559
    assert params["guidance"] == 6.5 and params["scheduler"] == "dpmpp-2m-karras"


def test_parse_prompt_without_settings_or_negative():
    assert parse_parameters("just a prompt") == {"prompt": "just a prompt"}
    p = parse_parameters("p\nNegative prompt: n1\nn2")
    assert p == {"prompt": "p", "negative_prompt": "n1\nn2"}


def test_reads_comfyui_prompt_graph():
    graph = {
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 156680208700286, "steps": 20, "cfg": 8.0, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
            "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512,
                                                          "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "purple galaxy bottle",
                                                        "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark",
                                                        "clip": ["4", 1]}},
    }
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(graph))
    info.add_text("workflow", json.dumps({"nodes": []}))
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG", pnginfo=info)
    meta = read_png_metadata(buf.getvalue())
    assert meta.source == "comfyui" and meta.comfyui_workflow == {"nodes": []}
    p = meta.parameters
    assert p["prompt"] == "purple galaxy bottle" and p["negative_prompt"] == "text, watermark"
    assert (p["seed"], p["steps"], p["cfg_scale"], p["sampler"]) == (156680208700286, 20, 8.0,
                                                                     "euler")
    assert (p["width"], p["height"], p["model"]) == (512, 512, "v1-5.safetensors")


def test_unicode_parameters_use_itxt(png):
    out = write_png_metadata(png(), parameters="日本の猫 ✓\nSteps: 5, Seed: 1, Size: 4x3")
    assert b"iTXt" in out
    assert read_png_metadata(out).parameters["prompt"] == "日本の猫 ✓"


def test_not_a_png_is_a_clear_error():
    with pytest.raises(ValueError, match="not a PNG"):
        read_png_metadata(b"GIF89a....")
    with pytest.raises(ValueError, match="truncated"):
        write_png_metadata(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", parameters="x")


def test_format_history_and_export_run(store, record, png, tmp_path):
    rid = record(store, prompt="a red circle", data=png())
    child = record(store, prompt="edit it", data=png(color=(0, 0, 255)),
                   inputs=[store.get_run(rid).results[0].id], tool="h-edit")
    store.add_tag(rid, "best")
    table = format_history(store, limit=10)
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["ID", "Parent", "Status", "Tool"]
    assert lines[2].split()[:4] == [str(rid), "ok", "text-to-image", lines[2].split()[3]]  # no parent
    assert lines[3].split()[:5] == [str(child), str(rid), "ok", "└", "h-edit"]  # listed under its parent
    assert "a red circle (seed 1)" in table and "best" in table
    assert "1 newest of 2" in format_history(store, limit=1)

    paths = export_run(store, child, tmp_path / "out")
    assert [p.name for p in paths] == [f"run-{child}-image.png", f"run-{child}.json"]
    meta = read_png_metadata(paths[0])
    assert meta.implicit["tool_id"] == "h-edit" and meta.implicit["run_id"] == child
    assert meta.parameters["prompt"] == "edit it" and meta.parameters["seed"] == 1
    record_json = json.loads(paths[1].read_text())
    assert record_json["parent_run_id"] == rid and record_json["params"]["prompt"] == "edit it"
    with pytest.raises(RunNotFoundError, match="Run 999 does not exist.*history"):
        export_run(store, 999, tmp_path / "out")
    with pytest.raises(RunNotFoundError, match="not a run id"):
        export_run(store, "abc", tmp_path / "out")


def test_format_history_empty(store):
    assert "No runs" in format_history(store)


def test_export_numbers_a_runs_files_from_1_as_run_out_does(store, png, tmp_path):
    """Issue 28: `run --out` numbered a run's files from 1 and `export` from 0."""
    rid = store.record_run(tool_id="text-to-image", plugin="text_to_image", plugin_version="0.1.0",
                           params={"prompt": "two", "steps": 10}, seed=1,
                           results=[{"kind": "image", "data": png(), "ext": "png", "width": 4, "height": 3},
                                    {"kind": "image", "data": png(color=(0, 0, 255)), "ext": "png", "width": 4,
                                     "height": 3}])
    paths = export_run(store, rid, tmp_path / "out")
    assert [p.name for p in paths] == [f"run-{rid}-1-image.png", f"run-{rid}-2-image.png", f"run-{rid}.json"]
