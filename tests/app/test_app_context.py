"""What a plugin gets from the studio through the run context (API 1.1): its resources, data and
cache folders, model names resolved by the ``studio_resolve_model`` hook (one resolution, one
message, shared by the runner and the run function), the rewards of all plugins, and the same
context for commands; the one model fingerprint."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
from pathlib import Path

import pytest

from app import api
from app.jobs import JobRunner, JobState
from app.plugins import PluginManager

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "plugins_fixture"
RESOURCES = FIXTURE_DIR / "studio_models" / "resources"
WEIGHTS = RESOURCES / "toy-weights.bin"


@pytest.fixture
def models_manager(settings, monkeypatch):
    """A manager with the API 1.1 toy plugin (``studio_models``) registered as ``models``."""
    monkeypatch.syspath_prepend(str(FIXTURE_DIR))
    manager = PluginManager(settings, entry_points=[], env={}).load()
    rec = manager.register_plugin(importlib.import_module("studio_models.plugin"), "models")
    assert rec.ok, rec.error
    return manager


# ------------------------------------------------------------------------------- folders


def test_context_folders_are_the_plugins_own_and_made_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPLICIT_STUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("IMPLICIT_STUDIO_CACHE_DIR", raising=False)
    ctx = api.RunContext(plugin="my_plugin")
    assert not (tmp_path / "data").exists()  # nothing is made until asked for
    assert ctx.data_dir == tmp_path / "data" / "plugin-data" / "my_plugin" and ctx.data_dir.is_dir()
    assert ctx.cache_dir == tmp_path / "data" / "cache" / "plugin-cache" / "my_plugin" and ctx.cache_dir.is_dir()
    monkeypatch.setenv("IMPLICIT_STUDIO_CACHE_DIR", str(tmp_path / "cache"))
    assert api.RunContext(plugin="other").cache_dir == tmp_path / "cache" / "plugin-cache" / "other"
    assert api.RunContext().data_dir.name == "unregistered"
    given = api.RunContext(data_dir=tmp_path / "mine", cache_dir=tmp_path / "scratch")
    assert given.data_dir == tmp_path / "mine" and given.cache_dir == tmp_path / "scratch"
    assert given.data_dir.is_dir() and given.cache_dir.is_dir()


def test_resources_folder_is_the_plugins_own_and_the_bundled_one_for_builtins(models_manager):
    from app.paths import resources_dir

    assert models_manager.resources_dir("models") == RESOURCES
    assert models_manager.context("models").resources_dir == RESOURCES
    models_manager.register_plugin(importlib.import_module("plugins.rl.plugin"), "rl-again")
    assert models_manager.resources_dir("rl-again") == resources_dir()
    assert api.RunContext().resources_dir == resources_dir()


# ------------------------------------------------------------------------------- models


def test_model_names_resolve_through_the_hook_into_the_plugins_resources(models_manager):
    assert models_manager.find_model("toy-weights") == WEIGHTS
    assert models_manager.find_model("something else") is None
    ctx = models_manager.context("any")
    assert ctx.resolve_model("toy-weights") == WEIGHTS
    assert ctx.resolve_model(f"  {WEIGHTS}  ") == WEIGHTS  # a local path needs no plugin
    assert models_manager.resolve_model("toy-weights") == WEIGHTS
    with pytest.raises(api.ToolError, match=r"^model not found: toy-missing \(.*not-shipped\.bin does not exist"):
        ctx.resolve_model("toy-missing")
    with pytest.raises(api.ToolError, match=r"^model not found: no-such-model \(give a local model folder or file"):
        ctx.resolve_model("no-such-model")
    with pytest.raises(api.ToolError, match="no model given"):
        ctx.resolve_model(" ")


def test_a_bare_context_resolves_paths_only(tmp_path):
    f = tmp_path / "m.safetensors"
    f.write_bytes(b"x")
    assert api.RunContext().resolve_model(str(f)) == f
    with pytest.raises(api.ToolError, match=r"^model not found: default \("):
        api.RunContext().resolve_model("default")
    ctx = api.RunContext(model_lookup={"mine": f, "gone": tmp_path / "gone"}.get)
    assert ctx.resolve_model("mine") == f
    with pytest.raises(api.ToolError, match=r"^model not found: gone \(.*gone does not exist"):
        ctx.resolve_model("gone")


def test_a_resolver_that_raises_is_reported_and_skipped(models_manager):
    class Broken:
        @api.hookimpl
        def studio_resolve_model(self, ref):
            raise RuntimeError("resolver broke")

    models_manager.register_plugin(Broken(), "broken-resolver")
    assert models_manager.find_model("toy-weights") == WEIGHTS
    assert "resolver broke" in models_manager.records["broken-resolver"].runtime_errors[0]


def test_the_builtin_diffusion_plugins_name_the_bundled_model(settings):
    from app.paths import default_model_dir, default_model_onnx_dir

    manager = PluginManager(settings, entry_points=[], env={}).load()
    for name in ("text_to_image", "h_edit", "inpaint"):
        manager.register_plugin(importlib.import_module(f"plugins.{name}.plugin"), name)
    assert manager.find_model("default") == default_model_dir()
    assert manager.find_model("default-onnx") == default_model_onnx_dir()
    assert manager.find_model("/some/path") is None


def test_the_runner_records_the_model_the_run_function_resolves(models_manager, tmp_path):
    from storage import SessionStore

    store = SessionStore.open(tmp_path / "session")
    try:
        runner = JobRunner(models_manager, store, device="cpu")
        job = runner.run_sync("toy-model-info", {"seed": 1}, device="cpu")
        assert job.state is JobState.FINISHED, job.error
        run = store.get_run(job.run_id)
        assert run.model_ref == "toy-weights"
        assert run.model_hash == hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
        # the run function resolved the same file and computed the same fingerprint
        assert job.results[0].rows[0] == ("toy-weights", str(WEIGHTS), run.model_hash)

        own = runner.run_sync("toy-model-info", {"model": "toy-own"}, device="cpu")
        assert own.state is JobState.FINISHED, own.error  # an alias only the tool knows: no fingerprint
        assert store.get_run(own.run_id).model_hash is None

        missing = runner.run_sync("toy-model-info", {"model": "toy-missing"}, device="cpu")
        assert missing.state is JobState.FAILED and missing.traceback is None
        assert missing.error.startswith("model not found: toy-missing (")
    finally:
        store.close()


# ------------------------------------------------------------------------------- rewards, commands


def test_rewards_of_all_plugins_through_the_context(models_manager):
    from studio_models import ops

    ops.REWARD_CALLS.clear()
    ctx = models_manager.context("another_plugin")
    assert set(ctx.rewards) == {"toy-brightness"} and ctx.rewards["toy-brightness"].plugin == "models"
    scorer = ctx.load_reward("toy-brightness")
    assert callable(scorer) and ops.REWARD_CALLS == [("built", "another_plugin")]
    with pytest.raises(api.ToolError, match="unknown reward 'nope'; rewards from plugins: toy-brightness"):
        ctx.load_reward("nope")
    assert api.RunContext().rewards == {}


def test_a_command_with_a_ctx_parameter_gets_the_plugins_context(models_manager, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("IMPLICIT_STUDIO_DATA_DIR", str(tmp_path / "data"))
    assert models_manager.run_command(models_manager.commands["toy-where"], []) == 0
    out = capsys.readouterr().out.splitlines()
    assert "plugin=models" in out and f"resources={RESOURCES}" in out and f"model={WEIGHTS}" in out
    assert f"data={tmp_path / 'data' / 'plugin-data' / 'models'}" in out


# ------------------------------------------------------------------------------- fingerprint


def test_model_fingerprint_is_content_based_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPLICIT_STUDIO_CACHE_DIR", str(tmp_path / "cache"))
    f = tmp_path / "w.safetensors"
    f.write_bytes(b"abc")
    assert api.model_fingerprint(f) == hashlib.sha256(b"abc").hexdigest()
    assert str(f.resolve()) in json.loads((tmp_path / "cache" / "hashes.json").read_text())

    folder = tmp_path / "model"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "w.safetensors").write_bytes(b"weights")
    (folder / "model_index.json").write_text("{}")
    (folder / "notes.md").write_text("not part of the model")
    fingerprint = api.model_fingerprint(folder)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert api.model_fingerprint(copy) == fingerprint  # names and contents, not where it lives
    (copy / "notes.md").write_text("changed notes")
    assert api.model_fingerprint(copy) == fingerprint  # only weights and configs count
    (copy / "unet" / "w.safetensors").write_bytes(b"weightz")
    assert api.model_fingerprint(copy) != fingerprint
    with pytest.raises(FileNotFoundError):
        api.model_fingerprint(tmp_path / "nothing")
