"""Toy plugin of API 1.1: a named model in its own resources folder (``studio_resolve_model``), a
reward model (``studio_rewards``) and a command that takes the run context.

Imports only ``app.api``; the run functions live in ``studio_models.ops``.
"""

from app.api import CommandSpec, ModelParam, RewardSpec, SeedParam, ToolSpec, hookimpl

REQUIRES_API = "1.1"

#: Model names this plugin resolves, to files of its resources folder.
MODELS = {"toy-weights": "toy-weights.bin", "toy-missing": "not-shipped.bin"}


@hookimpl
def studio_tools():
    return [ToolSpec(id="toy-model-info", title="Describe a model", run="studio_models.ops:model_info",
                     params=(ModelParam(name="model", default="toy-weights",
                                        aliases=("toy-weights", "toy-missing", "toy-own")),
                             SeedParam(name="seed")),
                     results=("table",))]


@hookimpl
def studio_resolve_model(ref, resources_dir):
    name = MODELS.get(ref)
    return resources_dir / name if name else None


@hookimpl
def studio_rewards():
    return [RewardSpec(id="toy-brightness", title="Brightness", load="studio_models.ops:brightness_reward")]


@hookimpl
def studio_commands():
    return [CommandSpec(name="toy-where", help="print the plugin's folders", main="studio_models.ops:where_main")]
