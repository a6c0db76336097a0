import numpy as np
import pytest

from lab.default_model import shapes
from lab.default_model.detector import detect, score, sharpness


def _accuracy(samples):
    tot = {}
    for s in samples:
        for k, v in score(s.background, s.objects, detect(s.image)).items():
            tot[k] = tot.get(k, 0) + v
    return {k: v / len(samples) for k, v in tot.items()}


def test_detector_reads_clean_renders():
    acc = _accuracy([shapes.make_sample(10_000_000 + i, eval_wording=True) for i in range(200)])
    for key in ("colour", "shape", "position", "size", "count", "background"):
        assert acc[key] >= 0.99, (key, acc)


def test_detector_tolerates_noise_and_blur():
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(0)
    noisy = []
    for i in range(100):
        s = shapes.make_sample(20_000 + i)
        img = Image.fromarray(s.image).filter(ImageFilter.GaussianBlur(0.6))
        arr = np.asarray(img).astype(float) + rng.normal(0, 8, s.image.shape)
        s.image = np.clip(arr, 0, 255).astype(np.uint8)
        noisy.append(s)
    acc = _accuracy(noisy)
    assert acc["colour"] >= 0.95 and acc["position"] >= 0.95 and acc["shape"] >= 0.8, acc


def test_detector_is_not_fooled_by_an_empty_or_wrong_image():
    blank = np.full((64, 64, 3), 245, np.uint8)
    assert detect(blank).objects == ()
    s = shapes.make_sample(7)
    other = shapes.make_sample(8)
    # Scoring one scene's truth against another scene's picture must not come out perfect.
    sc = score(s.background, s.objects, detect(other.image))
    assert min(sc["colour"], sc["shape"], sc["position"], sc["background"]) < 1.0


def test_detector_rejects_non_rgb():
    with pytest.raises(ValueError, match="RGB"):
        detect(np.zeros((64, 64)))


def test_sharpness_orders_blur():
    from PIL import Image, ImageFilter

    img = shapes.make_sample(3).image
    blurred = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(2)))
    assert sharpness(img) > sharpness(blurred)


def test_shape_breakdown_says_which_shapes_are_misread_and_at_which_size():
    from lab.default_model.detector import shape_breakdown, shape_readings
    from lab.default_model.shapes import ShapeObject, render

    square = ShapeObject("square", "red", "small", (0, 0))
    star = ShapeObject("star", "blue", "large", (2, 2))
    truth = [square, star]
    right = detect(render("white", truth)[0])
    # the picture drew a circle where a square was asked for
    wrong = detect(render("white", [ShapeObject("circle", "red", "small", (0, 0)), star])[0])
    readings = (shape_readings(truth, right) + shape_readings(truth, wrong)
                + shape_readings(truth, detect(render("white", [])[0])))
    assert readings == [("square", "small", "square"), ("star", "large", "star"),
                        ("square", "small", "circle"), ("star", "large", "star"),
                        ("square", "small", "nothing"), ("star", "large", "nothing")]
    b = shape_breakdown(readings)
    assert b["objects"] == 6 and b["errors"] == 3
    assert b["by_size"] == {"small": pytest.approx(1 / 3), "large": pytest.approx(2 / 3)}
    assert b["by_shape"] == {"square": pytest.approx(1 / 3), "star": pytest.approx(2 / 3)}
    assert b["misread"] == {"square as circle": 1, "square as nothing": 1, "star as nothing": 1}
    assert b["asked"]["square"] == 3 and b["asked"]["ring"] == 0
    # the same judgement as score's shape accuracy
    per_image = [score("white", truth, d)["shape"] for d in (right, wrong)]
    assert per_image == [1.0, 0.5]
