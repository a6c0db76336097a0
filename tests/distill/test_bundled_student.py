"""The one-step student shipped in resources/models/default-1step: format, size, card, and that one
step without guidance draws what held-out prompts ask."""

import json

import numpy as np

from app.paths import default_model_dir, default_student_dir

STUDENT = default_student_dir()


def _size(folder):
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_is_a_one_step_diffusers_folder_and_the_bundled_models_stay_under_60_mb():
    index = json.loads((STUDENT / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    files = [f for f in STUDENT.rglob("*") if f.is_file()]
    assert not [f for f in files if f.suffix in {".bin", ".ckpt", ".pt", ".pth", ".pkl"}]
    assert (STUDENT / "tokenizer" / "vocab.json").is_file() and (STUDENT / "tokenizer" / "merges.txt").is_file()
    sched = json.loads((STUDENT / "scheduler" / "scheduler_config.json").read_text())
    assert sched["timestep_spacing"] == "trailing" and sched["set_alpha_to_one"] is True
    settings = json.loads((STUDENT / "implicit_studio.json").read_text())
    assert settings["text-to-image"] == {"steps": 1, "guidance": 1.0}
    teacher_hash = settings["distilled"]["teacher_hash"]
    from app.api import model_fingerprint

    assert teacher_hash == model_fingerprint(default_model_dir())  # distilled from the model shipped beside it
    models = default_model_dir().parent
    assert sum(_size(d) for d in models.iterdir() if d.is_dir()) < 60e6


def test_card_records_command_time_losses_and_the_evaluation_against_the_teacher():
    card = (STUDENT / "README.md").read_text()
    assert "python -m lab.distill.train_student" in card and "implicit-studio run distill" in card
    assert "of wall time" in card and "Losses (mean of 100 iterations" in card
    assert "| student | 1 |" in card and "| teacher, DDIM, guidance 5 | 25 |" in card
    assert "Floors asked of the student at one step: colour" in card and "NOT met" not in card


def test_one_step_without_guidance_draws_what_the_prompt_asks():
    """Eight held-out prompts, one step: the detector finds most asked colours and positions."""
    from lab.default_model.detector import detect, score
    from lab.default_model.evaluate import eval_scenes
    from plugins.diffusion_common.onestep import OneStepGenerator

    live = OneStepGenerator(str(STUDENT))
    scenes = [s for s in eval_scenes(40) if len(s.objects) == 1][:8]
    imgs = [live(s.caption, i) for i, s in enumerate(scenes)]
    scores = [score(s.background, s.objects, detect(img)) for s, img in zip(scenes, imgs)]
    colour = sum(sc["colour"] for sc in scores)
    position = sum(sc["position"] for sc in scores)
    # the student gets about 99% of colours and positions right in one step (its card); chance is
    # about 1 in 8 for a colour and 1 in 9 for a position
    assert colour >= 7 and position >= 7, (colour, position)
    assert np.abs(imgs[0].astype(int) - imgs[1].astype(int)).mean() > 10
