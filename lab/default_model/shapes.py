"""Procedural captioned shape images with ground truth (numpy + Pillow, no torch, no Qt).

Each image shows one or two flat-coloured shapes on a plain background. ``make_sample(seed)``
is deterministic: the same seed always gives the same picture, caption and ground truth, so
training data, evaluation prompts and inpainting tests can all be regenerated from numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SUPERSAMPLE = 4

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross")

# Object colours: well separated in RGB so that a plain nearest-colour rule can name them.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 230),
    "yellow": (245, 225, 30),
    "orange": (250, 135, 20),
    "purple": (135, 45, 190),
    "cyan": (30, 210, 230),
    "pink": (250, 120, 200),
}
# Backgrounds: the neutral ones plus every object colour (never the same as an object's colour).
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
    **COLOURS,
}

SIZES = {"small": 12, "medium": 18, "large": 24}
SIZE_WORDS = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium", "medium-sized", "mid-sized"),
    "large": ("large", "big", "huge"),
}

# 3x3 grid of positions, (row, col) -> canonical name and synonyms.
POSITIONS: dict[tuple[int, int], tuple[str, ...]] = {
    (0, 0): ("top left", "upper left"),
    (0, 1): ("top", "top center"),
    (0, 2): ("top right", "upper right"),
    (1, 0): ("left", "center left"),
    (1, 1): ("center", "middle"),
    (1, 2): ("right", "center right"),
    (2, 0): ("bottom left", "lower left"),
    (2, 1): ("bottom", "bottom center"),
    (2, 2): ("bottom right", "lower right"),
}
CELL_CENTRES = (12, 32, 52)  # pixel centres of the grid rows/columns at 64x64


@dataclass(frozen=True)
class ShapeObject:
    shape: str
    colour: str
    size: str
    cell: tuple[int, int]

    @property
    def position(self) -> str:
        return POSITIONS[self.cell][0]


@dataclass
class Sample:
    image: np.ndarray  # HxWx3 uint8
    caption: str
    background: str
    objects: list[ShapeObject]
    masks: list[np.ndarray] = field(default_factory=list)  # one bool HxW mask per object

    @property
    def mask(self) -> np.ndarray:
        """Union of the object masks."""
        out = np.zeros(self.image.shape[:2], bool)
        for m in self.masks:
            out |= m
        return out


# --------------------------------------------------------------------------------------- drawing
def _polygon_star(cx: float, cy: float, r: float, points: int = 5, inner: float = 0.45):
    pts = []
    for k in range(points * 2):
        rad = r if k % 2 == 0 else r * inner
        a = -math.pi / 2 + k * math.pi / points
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, d: float, fill) -> None:
    """Draw one shape of extent ``d`` centred at (cx, cy) (coordinates already supersampled)."""
    r = d / 2
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.9
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        h = d * 0.9
        draw.polygon(
            [(cx, cy - h / 2), (cx + d / 2, cy + h / 2), (cx - d / 2, cy + h / 2)], fill=fill
        )
    elif shape == "star":
        draw.polygon(_polygon_star(cx, cy + r * 0.08, r * 1.05), fill=fill)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        ri = r * 0.5
        draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=(0, 0, 0, 0))
    elif shape == "cross":
        w = d / 3 / 2
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")


def render(background: str, objects: list[ShapeObject], size: int = IMAGE_SIZE):
    """Render objects on a background; returns the image and one mask per object."""
    ss = SUPERSAMPLE
    big = size * ss
    scale = size / IMAGE_SIZE
    canvas = Image.new("RGB", (big, big), BACKGROUNDS[background])
    masks = []
    for obj in objects:
        layer = Image.new("RGBA", (big, big), (0, 0, 0, 0))
        d = ImageDraw.Draw(layer)
        cy = CELL_CENTRES[obj.cell[0]] * scale * ss
        cx = CELL_CENTRES[obj.cell[1]] * scale * ss
        draw_shape(d, obj.shape, cx, cy, SIZES[obj.size] * scale * ss, COLOURS[obj.colour] + (255,))
        canvas.paste(layer, (0, 0), layer)
        alpha = np.asarray(layer.split()[-1].resize((size, size), Image.BOX))
        masks.append(alpha >= 128)
    img = np.asarray(canvas.resize((size, size), Image.BOX), dtype=np.uint8).copy()
    return img, masks


# --------------------------------------------------------------------------------------- captions
# Training captions are composed from three clauses (the object, its position, the background),
# each with several phrasings, in any order and with varied punctuation, so that the text encoder
# learns which words bind to what rather than where in the sentence they stand. Evaluation uses
# EVAL_TEMPLATES, whose exact wording the composer never produces (it skips them).
_OBJ_FORMS = ("a {size} {colour} {shape}", "{size} {colour} {shape}", "a {colour} {shape}, {size}",
              "the {size} {colour} {shape}")
_POS_FORMS = ("in the {pos}", "at the {pos}", "{pos}", "at the {pos} of the background")
_BG_FORMS = ("on a {bg} background", "{bg} background", "on {bg}", "the background {bg}")
_JOIN = (", ", " ", "; ", ": ")
EVAL_TEMPLATES_ONE = ("on a {bg} background, in the {pos}, a {size} {colour} {shape}",)
EVAL_TEMPLATES_TWO = (
    "on a {bg} background: a {colour1} {shape1}, {size1}, in the {pos1}; a {colour2} {shape2}, {size2}, in the {pos2}",
)
# The templates of the first version of the data, kept in the mix (and in the tokenizer's vocabulary).
_ONE_TEMPLATES = (
    "a {size} {colour} {shape} in the {pos} on a {bg} background",
    "{bg} background, {size} {colour} {shape} in the {pos}",
    "a {colour} {shape}, {size}, {pos}, {bg} background",
    "{size} {colour} {shape} at the {pos} of a {bg} background",
    "a {size} {colour} {shape} on {bg}, {pos}",
    "{colour} {shape} in the {pos}, {size}, on a {bg} background",
)
_TWO_TEMPLATES = (
    "a {size1} {colour1} {shape1} in the {pos1} and a {size2} {colour2} {shape2} in the {pos2} on a {bg} background",
    "{bg} background, {size1} {colour1} {shape1} in the {pos1}, {size2} {colour2} {shape2} in the {pos2}",
    "two shapes on {bg}: a {colour1} {shape1} in the {pos1} and a {colour2} {shape2} in the {pos2}, {size1} and {size2}",
)


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _object_clause(rng: np.random.Generator, k: str = "") -> str:
    """An object with its position, the position before or after it."""
    obj = _pick(rng, _OBJ_FORMS).replace("}", k + "}")
    pos = _pick(rng, _POS_FORMS).replace("}", k + "}")
    return f"{obj} {pos}" if rng.random() < 0.75 else f"{pos}, {obj}"


def compose_template(n_objects: int, rng: np.random.Generator) -> str:
    """A random training template for one or two objects (never an evaluation template)."""
    held_out = set(EVAL_TEMPLATES_ONE + EVAL_TEMPLATES_TWO)
    while True:
        if rng.random() < 0.25:  # the original fixed templates
            t = _pick(rng, _ONE_TEMPLATES if n_objects == 1 else _TWO_TEMPLATES)
        else:
            objs = [_object_clause(rng, "" if n_objects == 1 else str(i + 1)) for i in range(n_objects)]
            body = objs[0] if n_objects == 1 else _pick(rng, (" and ", ", ", "; ")).join(objs)
            bg = _pick(rng, _BG_FORMS)
            t = f"{bg}{_pick(rng, _JOIN)}{body}" if rng.random() < 0.5 else f"{body}{_pick(rng, _JOIN)}{bg}"
        if t not in held_out:
            return t


def caption_for(background: str, objects: list[ShapeObject], rng: np.random.Generator, templates=None) -> str:
    def words(obj: ShapeObject):
        return (
            SIZE_WORDS[obj.size][rng.integers(len(SIZE_WORDS[obj.size]))],
            POSITIONS[obj.cell][rng.integers(len(POSITIONS[obj.cell]))],
        )

    t = _pick(rng, templates) if templates else compose_template(len(objects), rng)
    if len(objects) == 1:
        (o,) = objects
        size_w, pos_w = words(o)
        return t.format(size=size_w, colour=o.colour, shape=o.shape, pos=pos_w, bg=background)
    o1, o2 = objects
    s1, p1 = words(o1)
    s2, p2 = words(o2)
    return t.format(
        size1=s1, colour1=o1.colour, shape1=o1.shape, pos1=p1,
        size2=s2, colour2=o2.colour, shape2=o2.shape, pos2=p2, bg=background,
    )


# --------------------------------------------------------------------------------------- sampling
def random_scene(rng: np.random.Generator, two_prob: float = 0.3):
    """Draw a background and one or two objects that do not overlap."""
    n = 2 if rng.random() < two_prob else 1
    cells = [tuple(int(v) for v in divmod(int(c), 3)) for c in rng.choice(9, size=n, replace=False)]
    objects = []
    used = set()
    for cell in cells:
        colour = list(COLOURS)[rng.integers(len(COLOURS))]
        while colour in used:
            colour = list(COLOURS)[rng.integers(len(COLOURS))]
        used.add(colour)
        size_names = list(SIZES) if n == 1 else ["small", "medium"]  # two objects never overlap
        objects.append(
            ShapeObject(
                shape=SHAPES[rng.integers(len(SHAPES))],
                colour=colour,
                size=size_names[rng.integers(len(size_names))],
                cell=cell,
            )
        )
    bg_choices = [b for b in BACKGROUNDS if b not in used]
    background = bg_choices[rng.integers(len(bg_choices))]
    return background, objects


def make_sample(seed: int, *, two_prob: float = 0.3, size: int = IMAGE_SIZE, eval_wording: bool = False) -> Sample:
    """One captioned image with its ground truth, fully determined by ``seed``."""
    rng = np.random.default_rng(seed)
    background, objects = random_scene(rng, two_prob)
    templates = None
    if eval_wording:
        templates = EVAL_TEMPLATES_ONE if len(objects) == 1 else EVAL_TEMPLATES_TWO
    caption = caption_for(background, objects, rng, templates)
    img, masks = render(background, objects, size)
    return Sample(image=img, caption=caption, background=background, objects=objects, masks=masks)


def make_batch(seeds, **kw):
    """Images (N,H,W,3 uint8) and captions for a list of seeds."""
    samples = [make_sample(int(s), **kw) for s in seeds]
    return np.stack([s.image for s in samples]), [s.caption for s in samples], samples


def vocabulary() -> list[str]:
    """Every word any caption (training or evaluation wording) can contain."""
    words: set[str] = set()
    texts = list(_ONE_TEMPLATES + _TWO_TEMPLATES + EVAL_TEMPLATES_ONE + EVAL_TEMPLATES_TWO)
    texts += list(_OBJ_FORMS + _POS_FORMS + _BG_FORMS + _JOIN)
    fills = list(COLOURS) + list(BACKGROUNDS) + list(SHAPES)
    fills += [w for ws in SIZE_WORDS.values() for w in ws]
    fills += [w for ws in POSITIONS.values() for w in ws]
    import re

    for t in texts + fills:
        t = re.sub(r"\{[a-z0-9]+\}", " ", t)
        for w in re.findall(r"[a-z]+(?:-[a-z]+)*|[,;:]", t.lower()):
            words.add(w)
    for w in list(words):
        if "-" in w:
            words.update(w.split("-"))
    return sorted(words)


def vocabulary_by_role() -> dict[str, list[str]]:
    """The words of :func:`vocabulary` by the role captions give them (a word may have several:
    "red" is an object colour and a background colour; "white" only a background colour). The
    studio's prompt box reads this from the model folder's ``implicit_studio.json``."""
    import re

    def words(texts) -> list[str]:
        out: set[str] = set()
        for t in texts:
            out.update(re.findall(r"[a-z]+(?:-[a-z]+)*", t.lower()))
        return sorted(out)

    roles = {
        "shape": words(SHAPES),
        "object colour": words(COLOURS),
        "background colour": words(BACKGROUNDS),
        "size": words(w for ws in SIZE_WORDS.values() for w in ws),
        "position": words(w for ws in POSITIONS.values() for w in ws),
    }
    named = {w for ws in roles.values() for w in ws}
    roles["other"] = [w for w in vocabulary() if w not in named and re.fullmatch(r"[a-z]+(?:-[a-z]+)*", w)]
    return roles
