"""The plugin glue: conformance, tools run through a RunContext, reader/writer, headless CLI."""

import threading

import numpy as np
import pytest

from app import api
from app.testing import assert_plugin_conforms


@pytest.fixture
def data_env(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPLICIT_STUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMPLICIT_STUDIO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_plugin_conforms_and_stays_cheap():
    out = assert_plugin_conforms("plugins.inr.plugin")
    assert out["tools"] == ["inr-fit-image", "inr-fit-sdf", "inr-render"]


def _image(tmp_path):
    from plugins.inr.image2d import procedural_image, save_image

    return save_image(procedural_image(24), tmp_path / "in.png")


def test_fit_image_tool_and_render_back(data_env):
    from plugins.inr import tools
    from plugins.inr.image2d import load_image, psnr

    metrics, progress = [], []
    ctx = api.RunContext(on_metric=lambda n, s, v: metrics.append(n), on_progress=lambda *a: progress.append(a))
    img = api.ImageResult(image=(load_image(_image(data_env)) * 255).astype(np.uint8))
    out = tools.fit_image(ctx, img, steps=30, hidden=24, layers=2, render_scale=2, save_to=str(data_env / "fit"))
    render, weights, table, curves = out
    # progress in the fit's own units: the bar's step is the step the message names (issue 28)
    step, total, message = progress[9]
    assert total == 31 and message.startswith(f"step {step}/30")
    assert progress[-1][:2] == (31, 31)
    # its loss and PSNR curves, one row a step, drawn as curves by the window
    assert curves.columns == ("step", "loss", "PSNR (dB)") and len(curves.rows) == 30
    assert curves.rows[-1][2] > curves.rows[0][2]
    assert isinstance(render, api.ImageResult) and render.image.shape == (48, 48, 3)
    assert weights.path.endswith(".safetensors") and (data_env / "fit" / "inr-image.json").exists()
    assert "psnr" in metrics
    rows = dict(table.rows)
    assert rows["PSNR (dB)"] > 15
    # the weights open again and render the same image at the native size
    back = tools.render_inr(api.RunContext(), weights.path, width=24, height=24)[0]
    truth = load_image(data_env / "fit" / "target.png")
    assert psnr(back.image.astype(np.float32) / 255, truth) == pytest.approx(rows["PSNR (dB)"], abs=0.5)
    # the reader opens it too (2D -> an image)
    read = tools.read_inr(str(data_env / "fit" / "inr-image.json"))
    assert read[0].kind == "image"


def test_fit_image_cancel_returns_best_so_far(data_env):
    from plugins.inr import tools

    ev = threading.Event()
    seen = []

    def on_metric(name, step, value):
        if name == "psnr":
            seen.append(value)
            if step == 8:
                ev.set()

    ctx = api.RunContext(on_metric=on_metric, cancel_event=ev)
    img = api.ImageResult(image=np.zeros((16, 16, 3), np.uint8) + 100)
    out = tools.fit_image(ctx, img, steps=1000, hidden=8, layers=1, render_scale=1, save_to=str(data_env / "c"))
    rows = dict(out[2].rows)
    assert rows["cancelled"] is True and rows["steps"] == 8
    assert rows["PSNR (dB)"] >= max(seen) - 0.2  # never worse than the best step seen


def test_fit_sdf_tool_with_mesh_and_bad_mesh(data_env):
    import trimesh

    from plugins.inr import tools

    path = data_env / "ico.stl"
    trimesh.creation.icosphere(subdivisions=2, radius=0.7).export(path)
    ctx = api.RunContext()
    out = tools.fit_sdf(ctx, mesh=str(path), steps=25, hidden=16, layers=2, points=512, resolution=32,
                        save_to=str(data_env / "sdf"))
    mesh, render, weights, table, curves = out
    assert curves.columns == ("step", "loss") and len(curves.rows) == 25
    assert isinstance(mesh, api.MeshResult) and len(mesh.faces) > 100
    v = mesh.vertices[mesh.faces].astype(np.float64)
    signed_volume = np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6
    assert signed_volume > 0  # outward-wound faces enclose a positive volume
    assert render.image.shape == (192, 192, 3) and (render.image != render.image[0, 0]).any()
    assert (data_env / "sdf" / "mesh.obj").exists() and (data_env / "sdf" / "reference.ply").exists()
    assert dict(table.rows)["Chamfer distance (input units)"] < 0.2
    (data_env / "bad.obj").write_text("garbage")
    with pytest.raises(api.ToolError, match="bad.obj"):
        tools.fit_sdf(ctx, mesh=str(data_env / "bad.obj"), steps=1)
    # a resolution that would not fit in memory is refused with a sentence before any work
    with pytest.raises(api.ToolError, match="needs about"):
        tools._bake_and_mesh(tools._CtxAdapter(None), lambda p: p[:, 0], np.array([[-1.0] * 3, [1.0] * 3]), 100_000)


def test_render_tool_bad_file_and_writer(data_env):
    from plugins.inr import tools

    (data_env / "x.pth").write_bytes(b"junk")
    with pytest.raises(api.ToolError, match="weights-only"):
        tools.render_inr(api.RunContext(), str(data_env / "x.pth"))
    with pytest.raises(ValueError):
        tools.read_inr(str(data_env / "x.pth"))
    (data_env / "other.json").write_text('{"agent": 1}')
    with pytest.raises(ValueError, match="not an INR"):
        tools.read_inr(str(data_env / "other.json"))
    mesh = api.MeshResult(vertices=[[0, 0, 0], [1, 0, 0], [0, 1, 0]], faces=[[0, 1, 2]])
    tools.write_mesh(mesh, str(data_env / "t.stl"))
    assert (data_env / "t.stl").stat().st_size > 80


def test_headless_cli_fit_image(data_env, monkeypatch):
    from app import cli

    monkeypatch.setenv("IMPLICIT_STUDIO_CONFIG_DIR", str(data_env / "cfg"))
    out_dir = data_env / "out"
    code = cli.main(["run", "inr-fit-image", "--image", str(_image(data_env)), "--steps", "5", "--hidden", "8",
                     "--layers", "1", "--out", str(out_dir), "--no-session", "--quiet"])
    assert code == 0
    names = sorted(p.suffix for p in out_dir.iterdir())
    assert ".png" in names and ".safetensors" in names
    from plugins.inr.models import load_inr

    w = next(p for p in out_dir.iterdir() if p.suffix == ".safetensors")
    assert load_inr(w).config.kind == "image"  # the lone weights file carries its config


def test_render_tool_opens_foreign_state_dict_with_config(data_env, samples):
    import torch

    from plugins.inr import tools
    from plugins.inr.models import load_inr

    m = load_inr(samples / "sdf-sphere.json")
    # as another codebase would save it: DataParallel prefix, a checkpoint dict, no sidecar
    torch.save({"epoch": 7, "model_state_dict": {"module." + k: v for k, v in m.state_dict().items()}},
               data_env / "latest.pth")
    out = tools.render_inr(api.RunContext(), str(data_env / "latest.pth"), config=str(samples / "sdf-sphere.json"),
                           width=48, height=48, resolution=32)
    mesh, img = out
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(np.median(r) - 0.5) < 0.03
    assert img.image.shape == (48, 48, 3)
    # without the config the architecture is guessed (and said so in the metadata)
    guessed = tools.render_inr(api.RunContext(), str(data_env / "latest.pth"), width=32, height=32, resolution=32)
    assert "siren" in guessed[0].metadata["guess"]


def _plane_decoder(tmp_path):
    """A DeepSDF-style decoder (latent ++ xyz, weight norm, skip at layer 2, tanh) whose SDF is the
    plane x = z[0]: each latent code puts the surface somewhere else."""
    import warnings

    import torch
    from torch import nn

    latent, width = 2, 16
    d0 = latent + 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layers = {"lin0": nn.utils.weight_norm(nn.Linear(d0, width)),
                  "lin1": nn.utils.weight_norm(nn.Linear(width, width - d0)),
                  "lin2": nn.utils.weight_norm(nn.Linear(width, width)), "lin3": nn.Linear(width, 1)}
    want = {"lin0": torch.zeros(width, d0), "lin1": torch.zeros(width - d0, width), "lin2": torch.zeros(width, width)}
    want["lin0"][0, 0], want["lin0"][0, latent] = -1.0, 1.0  # h = x - z0 + 2 (positive inside the box)
    want["lin1"][0, 0] = 1.0
    want["lin2"][0, 0] = 1.0
    state = {}
    for name, w in want.items():
        v = torch.eye(w.shape[0], w.shape[1])  # any non-zero direction; the gain decides the row
        g = w.norm(dim=1, keepdim=True)
        v[g[:, 0] > 0] = w[g[:, 0] > 0]
        state[f"{name}.weight_v"], state[f"{name}.weight_g"] = v, g
        state[f"{name}.bias"] = torch.zeros(w.shape[0])
    state["lin0.bias"][0] = 2.0
    state["lin3.weight"] = torch.zeros(1, width)
    state["lin3.weight"][0, 0] = 1.0
    state["lin3.bias"] = torch.tensor([-2.0])
    ckpt = tmp_path / "2000.pth"
    torch.save({"epoch": 2000, "model_state_dict": {"module." + k: v for k, v in state.items()}}, ckpt)
    codes = tmp_path / "latest.pth"
    torch.save({"epoch": 2000, "latent_codes": {"weight": torch.tensor([[0.3, 0.0], [-0.2, 0.0]])}}, codes)
    return ckpt, codes


def test_render_tool_takes_deepsdf_latent_codes_and_warns_without_them(data_env, tmp_path, caplog, studio_cli):
    from plugins.inr import tools

    ckpt, codes = _plane_decoder(tmp_path)
    for index, where in ((0, 0.3), (1, -0.2)):
        mesh = tools.render_inr(api.RunContext(), str(ckpt), latent_codes=str(codes), latent_index=index,
                                width=24, height=24, resolution=24)[0]
        assert abs(np.median(mesh.vertices[:, 0]) - where) < 0.05, index
        assert mesh.metadata["latent_index"] == index and "warnings" not in mesh.metadata
    with caplog.at_level("WARNING"):
        bare = tools.render_inr(api.RunContext(), str(ckpt), width=24, height=24, resolution=24)[0]
    assert abs(np.median(bare.vertices[:, 0])) < 0.05  # the zero code
    assert "no latent codes file was given" in bare.metadata["warnings"][0]
    assert "zero code" in caplog.text
    with pytest.raises(api.ToolError, match="out of range"):
        tools.render_inr(api.RunContext(), str(ckpt), latent_codes=str(codes), latent_index=5, resolution=16)
    # the options exist on the command line (and so in the window's form)
    helptext = studio_cli("run", "inr-render", "--help").stdout
    assert "--latent-codes" in helptext and "--latent-index" in helptext


def test_fit_sdf_exports_in_the_input_frame_and_units(data_env):
    """Issue 27: an off-centre torus in millimetres (major radius 50, minor 20, centred at
    (300, -200, 75)) comes back in the same place and size, and the Chamfer distance reported is
    the one measured there."""
    import trimesh

    from plugins.inr import tools
    from plugins.inr.geometry import chamfer_and_normals, load_mesh

    torus = trimesh.creation.torus(major_radius=50.0, minor_radius=20.0, major_sections=48, minor_sections=24)
    torus.apply_translation([300.0, -200.0, 75.0])
    path = data_env / "torus-mm.ply"
    torus.export(path)
    out = tools.fit_sdf(api.RunContext(), mesh=str(path), steps=200, hidden=32, layers=2, points=2048,
                        resolution=48, save_to=str(data_env / "sdf"))
    mesh, _render, _weights, table, _curves = out
    lo, hi = np.asarray(mesh.vertices).min(0), np.asarray(mesh.vertices).max(0)
    assert np.allclose(lo, torus.bounds[0], atol=6.0) and np.allclose(hi, torus.bounds[1], atol=6.0), (lo, hi)
    exported = load_mesh(data_env / "sdf" / "mesh.ply")
    assert np.allclose(exported.bounds, [lo, hi], atol=1e-3)
    reported = dict(table.rows)["Chamfer distance (input units)"]
    measured = chamfer_and_normals(exported, torus, n=20000, seed=0)["chamfer"]
    assert reported == pytest.approx(measured, rel=0.05)
    assert reported < 3.0  # millimetres, against a torus 140 mm across
    assert mesh.metadata["frame"]["centre"] == pytest.approx([300.0, -200.0, 75.0], abs=1.0)
    assert np.allclose(load_mesh(data_env / "sdf" / "reference.ply").bounds, torus.bounds, atol=1e-3)


def test_memory_bombs_are_refused_before_any_work(data_env):
    """Issue 27: ``inr-fit-image --max-side 2048 --render-scale 16`` (a 32768x32768 render) and an
    INR config with hidden layers of 200,000 units are refused with the limit and the way around."""
    import json

    from plugins.inr import tools
    from plugins.inr.memory import available_memory
    from plugins.inr.models import INRConfig, INRConfigError, build_model

    big = api.ImageResult(image=np.zeros((2048, 2048, 3), np.uint8))
    t0 = __import__("time").monotonic()
    with pytest.raises(api.ParamError, match=r"Render scale: rendering 32768x32768 pixels needs about .* GB") as exc:
        tools.fit_image(api.RunContext(), big, steps=1, max_side=2048, render_scale=16)
    assert exc.value.param == "render_scale" and "render scale of" in str(exc.value)
    assert __import__("time").monotonic() - t0 < 10  # refused before fitting
    with pytest.raises(INRConfigError, match=r"40,00\d,\d{3},\d{3} weights .* GB as float32.*narrower"):
        build_model(INRConfig(arch="relu", in_features=2, out_features=3, widths=[200000, 200000]))
    assert available_memory() > 0
    from plugins.inr.models import save_inr

    small = build_model(INRConfig(arch="relu", in_features=2, out_features=3, widths=[8, 8]))
    js = save_inr(small, data_env / "shared" / "net")  # an INR from someone else, its config edited
    meta = json.loads(js.read_text())
    meta["widths"] = [200000, 200000]
    js.write_text(json.dumps(meta))
    with pytest.raises(api.ToolError, match="GB as float32"):
        tools.render_inr(api.RunContext(), str(js))
