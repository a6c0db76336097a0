"""Distillation plugin: the ``distill`` tool, which turns an SD-1.x/2.x-structured text-to-image model
into a one-step generator in place, data-free (Score identity Distillation with SiD-LSG guidance, or
DMD2's regression-free distribution matching). Cheap to import: app.api only; the run function
(``plugins.distill.run``) imports torch and diffusers when it runs."""

from app.api import BoolParam, ChoiceParam, FloatParam, IntParam, ModelParam, PathParam, TextParam, ToolSpec, hookimpl

REQUIRES_API = "1.0"

# Kept equal to plugins.distill.compute.METHODS / METHOD_LABELS (a test checks it).
METHOD_CHOICES = ("sid", "dmd")
METHOD_LABELS = ("SiD (Score identity Distillation, SiD-LSG guidance)", "DMD2 (regression-free, two time-scale)")


def tool_params():
    return (
        ModelParam(name="teacher", default="default",
                   help="the model to distil: 'default' (the bundled model), an SD 1.x/2.x diffusers folder or a "
                        ".safetensors checkpoint"),
        ChoiceParam(name="method", choices=METHOD_CHOICES, labels=METHOD_LABELS, default="sid",
                    help="sid: Score identity Distillation (gradients through the teacher and the fake-score "
                         "network); dmd: DMD2 distribution matching with several fake-score updates per step"),
        PathParam(name="run_dir", mode="dir", must_exist=False,
                  help="the run's folder: checkpoints, preview.png and, at the end, the student (RUN_DIR/student); "
                       "running again on the same folder resumes"),
        PathParam(name="prompts", mode="open", filters=("Text files (*.txt)",),
                  help="training prompts, one a line (no images are needed)"),
        IntParam(name="iterations", default=1000, min=1, max=10_000_000, help="generator updates"),
        IntParam(name="batch", default=16, min=1, max=4096, help="samples per update"),
        FloatParam(name="lr", default=1e-5, min=1e-8, max=1e-2, step=1e-6, decimals=8,
                   help="the generator's learning rate"),
        FloatParam(name="fake_lr", default=1e-5, min=1e-8, max=1e-2, step=1e-6, decimals=8,
                   help="the fake-score network's learning rate"),
        FloatParam(name="guidance", default=2.0, min=1.0, max=50.0, step=0.5,
                   help="the teacher's classifier-free guidance, distilled into the student"),
        FloatParam(name="fake_guidance", default=0.0, min=0.0, max=50.0, step=0.5, advanced=True,
                   help="SiD-LSG's guidance on the fake-score network (training and reading it); 0 = the method's: "
                        "sid the teacher's guidance (SiD-LSG's equal guidance), dmd 1 (none)"),
        FloatParam(name="alpha", default=1.2, min=-10.0, max=10.0, step=0.1, advanced=True,
                   help="SiD's alpha (sid only)"),
        IntParam(name="fake_updates", default=0, min=0, max=100, advanced=True,
                 help="fake-score updates per generator update; 0 = the method's (sid 1, dmd 5)"),
        IntParam(name="tmin", default=20, min=0, max=100_000, advanced=True,
                 help="the lowest timestep at which the samples are judged"),
        IntParam(name="tmax", default=980, min=1, max=100_000, advanced=True,
                 help="the highest timestep at which the samples are judged"),
        FloatParam(name="ema_halflife", default=0.0, min=0.0, max=1e7, step=10.0, advanced=True,
                   help="EMA of the generator, half-life in iterations (0: the student is the generator itself)"),
        IntParam(name="checkpoint_every", default=50, min=1, max=1_000_000, help="iterations between checkpoints"),
        IntParam(name="preview_every", default=50, min=0, max=1_000_000,
                 help="iterations between previews of the student on a fixed grid of prompts (0: none)"),
        TextParam(name="preview_prompts", default="", multiline=True,
                  help="the preview grid's prompts, one a line (empty: the first eight training prompts)"),
        ChoiceParam(name="train_precision", choices=("auto", "bf16", "fp32"), default="auto", advanced=True,
                    help="the training passes' arithmetic (the run's --precision does not apply: these passes "
                         "autocast to bfloat16 or stay float32); auto: bfloat16 autocast on CUDA GPUs with "
                         "bfloat16 and on CPUs with AMX, else float32"),
        IntParam(name="threads", default=0, min=0, max=256, advanced=True,
                 help="CPU threads (0: all cores, fewer while other processes load the machine)"),
        IntParam(name="seed", default=0, min=0, max=2**31 - 1, advanced=True,
                 help="the run's random seed (prompts, noise, timesteps)"),
        BoolParam(name="export", default=True, advanced=True, help="write the student folder at the end"),
    )


@hookimpl
def studio_tools():
    return [
        ToolSpec(
            id="distill",
            title="Distil a one-step model",
            description=("Turn a local SD 1.x/2.x-structured text-to-image model into a one-step generator, "
                         "without images: Score identity Distillation (SiD, with SiD-LSG guidance) or DMD2. "
                         "Shows the losses and the student's pictures as it trains, measures its speed and ETA "
                         "in the first iterations, keeps a checkpoint when cancelled and resumes from it."),
            group="generate",
            run="plugins.distill.run:run_distill",
            results=("image", "table"),
            backends=("torch",),
            params=tool_params(),
        )
    ]
