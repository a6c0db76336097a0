"""Run functions of the API 1.1 toy plugin."""

from app.api import RunContext, TableResult, model_fingerprint

#: (reward id, prompt) of every scorer built and every call of it (tests read it).
REWARD_CALLS: list = []


def model_info(ctx: RunContext, model: str, seed: int) -> TableResult:
    if model == "toy-own":  # an alias no plugin resolves: the tool knows it itself (API 1.0 style)
        return TableResult(columns=("model", "path", "fingerprint"), rows=[(model, "", "")])
    path = ctx.resolve_model(model)
    return TableResult(columns=("model", "path", "fingerprint"), rows=[(model, str(path), model_fingerprint(path))])


def brightness_reward(ctx: RunContext):
    REWARD_CALLS.append(("built", ctx.plugin))

    def score(images, prompt):
        REWARD_CALLS.append(("scored", prompt))
        return images.mean(dim=(1, 2, 3))

    return score


def where_main(argv, ctx: RunContext) -> int:
    print(f"plugin={ctx.plugin}")
    print(f"resources={ctx.resources_dir}")
    print(f"data={ctx.data_dir}")
    print(f"model={ctx.resolve_model('toy-weights')}")
    return 0
