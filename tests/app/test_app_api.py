"""The public plugin API: parameter validation (shared by form and CLI), records, results,
version checks, the run context."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from app import api


def test_int_param_range_and_parse_share_messages():
    p = api.IntParam(name="num_steps", default=10, min=1, max=50)
    assert p.label == "Num steps" and p.cli_option == "--num-steps"
    assert p.validate(7) == 7 and p.parse(" 8 ") == 8 and p.validate(3.0) == 3
    with pytest.raises(api.ParamError) as a:
        p.validate(51)
    with pytest.raises(api.ParamError) as b:
        p.parse("51")
    assert str(a.value) == str(b.value) == "Num steps: must be between 1 and 50, got 51"
    assert a.value.param == "num_steps"
    for bad in ("ten", True, 2.5, None):
        with pytest.raises(api.ParamError, match="whole number"):
            p.validate(bad)
    assert p.validate(np.int64(4)) == 4


def test_float_param():
    p = api.FloatParam(name="guidance", default=7.5, min=0.0, max=20.0)
    assert p.parse("1e1") == 10.0
    with pytest.raises(api.ParamError, match="at most|between"):
        p.validate(21)
    with pytest.raises(api.ParamError, match="finite"):
        p.validate(float("nan"))
    with pytest.raises(api.ParamError, match="expected a number"):
        p.parse("abc")
    assert api.FloatParam(name="x", min=0.5).validate(1e9) == 1e9
    with pytest.raises(api.ParamError, match="at least 0.5"):
        api.FloatParam(name="x", min=0.5).validate(0.1)


def test_choice_bool_text_params():
    c = api.ChoiceParam(name="scheduler", choices=("ddim", "euler"))
    assert c.default == "ddim" and c.parse("euler") == "euler"
    with pytest.raises(api.ParamError, match="one of ddim, euler"):
        c.parse("pndm")
    with pytest.raises(ValueError, match="not a choice"):
        api.ChoiceParam(name="s", choices=("a",), default="b")
    b = api.BoolParam(name="tile")
    assert b.parse("yes") is True and b.parse("OFF") is False and b.validate(1) is True
    with pytest.raises(api.ParamError, match="true or false"):
        b.parse("maybe")
    t = api.TextParam(name="prompt", multiline=True, allow_empty=False, max_length=5)
    assert t.validate("hi") == "hi"
    with pytest.raises(api.ParamError, match="must not be empty"):
        t.validate("  ")
    with pytest.raises(api.ParamError, match="at most 5 characters"):
        t.validate("toolong")


def test_seed_param_random_and_recorded():
    s = api.SeedParam(name="seed")
    assert s.default == -1 and s.validate(None) == -1 and s.parse("random") == -1
    assert s.validate(123) == 123
    with pytest.raises(api.ParamError, match="-1 \\(random\\) or between 0 and"):
        s.validate(2**40)
    seeds = {api.SeedParam.resolve(-1) for _ in range(20)}
    assert len(seeds) > 1 and all(0 <= x <= api.SEED_MAX for x in seeds)
    assert api.SeedParam.resolve(5) == 5


def test_image_mask_path_model_params(tmp_path):
    f = tmp_path / "in.png"
    f.write_bytes(b"x")
    img = api.ImageParam(name="image")
    assert img.validate(str(f)) == str(f)
    assert img.validate("result:12") == "result:12"
    with pytest.raises(api.ParamError, match="file not found"):
        img.validate(str(tmp_path / "missing.png"))
    with pytest.raises(api.ParamError, match="result:12"):
        img.validate("result:abc")
    with pytest.raises(api.ParamError, match="required"):
        img.validate(None)
    assert api.MaskParam(name="mask", optional=True).validate("") is None
    arr = np.zeros((2, 2, 3), np.uint8)
    assert img.validate(arr) is arr and img.to_json(arr).startswith("<")
    p = api.PathParam(name="out", mode="save", must_exist=True)
    assert p.validate(str(tmp_path / "new.ply")).endswith("new.ply")
    with pytest.raises(api.ParamError, match="folder not found"):
        api.PathParam(name="d", mode="dir").validate(str(tmp_path / "nope"))
    m = api.ModelParam(name="model")
    assert m.validate("default") == "default" and m.validate(str(tmp_path)) == str(tmp_path)
    with pytest.raises(api.ParamError, match="model not found"):
        m.validate(str(tmp_path / "nomodel"))


def test_param_names_must_be_snake_case():
    with pytest.raises(ValueError, match="snake_case"):
        api.IntParam(name="NumSteps")


def test_toolspec_validation_and_defaults():
    t = api.ToolSpec(id="my-tool", title="T", run="pkg.mod:fn",
                     params=[api.IntParam(name="n", default=2, min=1, max=3), api.SeedParam(name="seed")])
    assert isinstance(t.params, tuple)
    assert t.validate({}) == {"n": 2, "seed": -1}
    with pytest.raises(api.ParamError, match="no parameter 'm'"):
        t.validate({"m": 1})
    with pytest.raises(ValueError, match="kebab-case"):
        api.ToolSpec(id="My_Tool", title="T", run="a:b")
    with pytest.raises(ValueError, match="module:attribute"):
        api.ToolSpec(id="x", title="T", run="not a ref")
    with pytest.raises(ValueError, match="unique"):
        api.ToolSpec(id="x", title="T", run="a:b", params=(api.IntParam(name="n"), api.IntParam(name="n")))
    with pytest.raises(ValueError, match="unknown result kinds"):
        api.ToolSpec(id="x", title="T", run="a:b", results=("picture",))
    with pytest.raises(Exception):
        t.id = "other"  # frozen


def test_api_version_checks():
    major, minor = (int(x) for x in api.API_VERSION.split("."))
    assert api.api_compatible(api.API_VERSION)
    assert api.api_compatible(f"{major}.0")
    assert not api.api_compatible(f"{major}.{minor + 1}")
    assert not api.api_compatible(f"{major + 1}.0")
    with pytest.raises(api.IncompatibleAPIError, match="needs Implicit Studio plugin API 99.0"):
        api.check_api_version("99.0", "plugin 'x'")
    with pytest.raises(api.IncompatibleAPIError, match="no longer supports"):
        api.check_api_version("0.9", "plugin 'x'")
    with pytest.raises(api.IncompatibleAPIError, match="MAJOR.MINOR"):
        api.check_api_version("one")
    # the message names the distribution to install another version of, with the command
    with pytest.raises(api.IncompatibleAPIError) as err:
        api.check_api_version("1.99", "plugin 'seed_sweep'", dist="studio-seed-sweep", version="0.3.0")
    assert 'install an older version of the distribution studio-seed-sweep (pip install "studio-seed-sweep<0.3.0")' \
        in str(err.value)
    with pytest.raises(api.IncompatibleAPIError, match=r"pip install -U studio-seed-sweep"):
        api.check_api_version("0.9", "plugin 'seed_sweep'", dist="studio-seed-sweep", version="0.1.0")


def test_load_ref():
    assert api.load_ref("app.api:ToolSpec") is api.ToolSpec
    assert api.load_ref("os.path:join.__name__") == "join"
    with pytest.raises(AttributeError, match="no attribute"):
        api.load_ref("app.api:Nope")
    with pytest.raises(ValueError):
        api.load_ref("app.api")


def test_image_result_normalises_inputs():
    from PIL import Image

    assert api.ImageResult(image=np.zeros((4, 5), np.uint8)).image.shape == (4, 5, 3)
    f = api.ImageResult(image=np.full((2, 2, 3), 0.5))
    assert f.image.dtype == np.uint8 and f.image[0, 0, 0] == 128
    pil = api.ImageResult(image=Image.new("RGBA", (3, 2), (1, 2, 3, 4)))
    assert pil.image.shape == (2, 3, 4) and pil.width == 3 and pil.height == 2
    with pytest.raises(ValueError, match="HxWx3"):
        api.ImageResult(image=np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        api.ImageResult(image=np.full((2, 2, 3), np.nan))
    with pytest.raises(ValueError, match="0..255"):
        api.ImageResult(image=np.full((2, 2, 3), 300, dtype=np.int32))


def test_other_results_validate_shapes():
    assert api.MaskResult(mask=np.array([[0, 1]])).mask.tolist() == [[0, 255]]
    assert api.MaskResult(mask=np.array([[0.0, 1.0]])).bool_mask.tolist() == [[False, True]]
    with pytest.raises(ValueError, match="do not exist"):
        api.MeshResult(vertices=np.zeros((3, 3)), faces=[[0, 1, 5]])
    mesh = api.MeshResult(vertices=np.zeros((3, 3)), faces=[[0, 1, 2]], colors=np.ones((3, 3)))
    assert mesh.colors.dtype == np.uint8 and mesh.colors.max() == 255
    field = api.ScalarFieldResult(values=np.zeros((4, 4, 4)))
    assert field.bounds == ((-1.0, 1.0),) * 3
    with pytest.raises(ValueError, match="one \\(min, max\\) pair per axis"):
        api.ScalarFieldResult(values=np.zeros((4, 4)), bounds=[(0, 1)])
    d = api.DistributionSeries(support=np.linspace(-1, 1, 5), weights=np.full((3, 2, 5), 0.2))
    assert d.steps.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="K=5"):
        api.DistributionSeries(support=np.linspace(-1, 1, 5), weights=np.full((3, 4), 0.25))
    with pytest.raises(ValueError, match="row 1"):
        api.TableResult(columns=("a", "b"), rows=[(1, 2), (3,)])
    with pytest.raises(ValueError, match="exactly one"):
        api.FileResult()


def test_run_context_progress_cancel_metrics():
    seen, metrics, previews = [], [], []
    ev = threading.Event()
    ctx = api.RunContext(seed=7, on_progress=lambda *a: seen.append(a), on_metric=lambda *a: metrics.append(a),
                         on_preview=previews.append, cancel_event=ev, tool_id="t")
    ctx.progress(1, 4, "one")
    ctx.log_metric("loss", 1, 0.5)
    ctx.preview(np.zeros((2, 2, 3), np.uint8))
    assert seen == [(1, 4, "one")] and metrics == [("loss", 1.0, 0.5)]
    assert isinstance(previews[0], api.ImageResult)
    assert not ctx.cancelled
    ev.set()
    assert ctx.cancelled
    with pytest.raises(api.Cancelled):
        ctx.progress(2, 4)
    assert seen == [(1, 4, "one")]  # a cancelled step is not reported
    assert ctx.numpy_rng().integers(0, 1000) == np.random.default_rng(7).integers(0, 1000)
    assert api.RunContext().device == "cpu"
    with pytest.raises(api.ToolError, match="no session"):
        api.RunContext().load_input("result:3")
