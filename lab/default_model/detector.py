"""A deterministic, non-learned detector for the shape images (numpy + scikit-image).

It names the background colour, finds the objects by colour clustering against a fixed palette
and connected components, and names each object's shape from scale-free shape measures (extent,
solidity, whether the centre is filled, circularity) by the nearest analytic prototype. The
prototypes are measured on clean renders of each shape, so nothing is fitted to model outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .shapes import BACKGROUNDS, CELL_CENTRES, COLOURS, IMAGE_SIZE, POSITIONS, SHAPES, SIZES, ShapeObject, render

MIN_AREA = 14  # pixels at 64x64; the smallest shape (a small star) covers about 45


@dataclass(frozen=True)
class Detection:
    shape: str
    colour: str
    size: str
    cell: tuple[int, int]
    centroid: tuple[float, float]  # (row, col) in pixels at 64x64
    area: int

    @property
    def position(self) -> str:
        return POSITIONS[self.cell][0]


@dataclass(frozen=True)
class SceneDetection:
    background: str
    objects: tuple[Detection, ...]


def _palette(names):
    return np.array([BACKGROUNDS[n] for n in names], np.float32)


def _nearest(pixels: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    pal = _palette(names)
    d = np.linalg.norm(pixels[..., None, :].astype(np.float32) - pal, axis=-1)
    return d.argmin(-1), d.min(-1)


def _features(mask: np.ndarray) -> np.ndarray:
    from skimage.measure import regionprops

    props = regionprops(mask.astype(np.uint8))[0]
    r0, c0, r1, c1 = props.bbox
    h, w = r1 - r0, c1 - c0
    cy, cx = (r0 + r1 - 1) / 2, (c0 + c1 - 1) / 2
    win = mask[int(round(cy)) - 1 : int(round(cy)) + 2, int(round(cx)) - 1 : int(round(cx)) + 2]
    centre = float(win.mean()) if win.size else 0.0
    perim = max(props.perimeter, 1.0)
    circ = min(4 * np.pi * props.area / perim**2, 1.2)
    crop = mask[r0:r1, c0:c1]
    flipped = crop[::-1]
    sym = (crop & flipped).sum() / max((crop | flipped).sum(), 1)  # top-bottom symmetry
    return np.array([props.extent, props.solidity, centre, circ, min(h, w) / max(h, w, 1), sym], np.float32)


_WEIGHTS = np.array([2.0, 2.0, 1.0, 1.0, 0.5, 2.0], np.float32)


@lru_cache(maxsize=1)
def prototypes():
    """Shape measures of clean renders of every shape at every size (analytic, not learned)."""
    feats, labels, areas = [], [], []
    for shape in SHAPES:
        for size in SIZES:
            for cell in POSITIONS:  # the pixel phase differs between grid cells
                img, _ = render("black", [ShapeObject(shape, "red", size, cell)])
                idx, _ = _nearest(img, ["red", "black"])
                m = _open(idx == 0)
                feats.append(_features(m))
                labels.append((shape, size))
                areas.append(int(m.sum()))
    return np.stack(feats), labels, np.array(areas)


def _open(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_dilation, binary_opening

    core = binary_opening(mask, np.ones((2, 2), bool))
    # Recover the shape's outline that the opening shaved off, without the 1-pixel fringes.
    return binary_dilation(core, np.ones((3, 3), bool)) & mask


def detect(image: np.ndarray) -> SceneDetection:
    """Background colour and the objects in one image (HxWx3 uint8, any size; analysed at 64x64)."""
    from PIL import Image
    from skimage.measure import label, regionprops

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"expected an RGB image, got an array of shape {img.shape}")
    img = img[..., :3].astype(np.uint8)
    if img.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        img = np.asarray(Image.fromarray(img).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR))
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]).astype(np.float32)
    bg_rgb = np.median(border, axis=0)
    bg_names = list(BACKGROUNDS)
    bg = bg_names[int(_nearest(bg_rgb[None], bg_names)[0][0])]

    names = [n for n in COLOURS if n != bg]
    all_names = names + [bg]
    idx, _ = _nearest(img, all_names)
    feats, labels, areas = prototypes()
    found = []
    for ci, cname in enumerate(names):
        mask = _open(idx == ci)
        if mask.sum() < MIN_AREA:
            continue
        lab = label(mask, connectivity=2)
        for region in regionprops(lab):
            if region.area < MIN_AREA:
                continue
            comp = lab == region.label
            f = _features(comp)
            d = np.linalg.norm((feats - f) * _WEIGHTS, axis=1)
            shape = labels[int(d.argmin())][0]
            same = [i for i, (s, _) in enumerate(labels) if s == shape]
            size = labels[min(same, key=lambda i: abs(areas[i] - region.area))][1]
            cy, cx = region.centroid
            cell = (int(np.argmin([abs(cy - c) for c in CELL_CENTRES])), int(np.argmin([abs(cx - c) for c in CELL_CENTRES])))
            found.append(Detection(shape, cname, size, cell, (float(cy), float(cx)), int(region.area)))
    found.sort(key=lambda d: -d.area)
    return SceneDetection(bg, tuple(found))


def sharpness(image: np.ndarray) -> float:
    """Mean gradient magnitude of the grey image (higher is sharper)."""
    g = np.asarray(image, np.float32)[..., :3].mean(-1)
    gy, gx = np.gradient(g)
    return float(np.sqrt(gx**2 + gy**2).mean())


def _matches(truth: list[ShapeObject], det: SceneDetection):
    """For each true object: (object, the detection judged as it or None, a detection of its colour exists).

    The judged detection is the nearest of the asked colour, else the nearest of any colour."""
    for obj in truth:
        same = [d for d in det.objects if d.colour == obj.colour]
        ty, tx = CELL_CENTRES[obj.cell[0]], CELL_CENTRES[obj.cell[1]]
        pool = same or list(det.objects)
        best = min(pool, key=lambda d: (d.centroid[0] - ty) ** 2 + (d.centroid[1] - tx) ** 2) if pool else None
        yield obj, best, bool(same)


def score(truth_background: str, truth: list[ShapeObject], det: SceneDetection) -> dict[str, float]:
    """Per-image scores: for each true object, the detection of its colour (else the nearest one)."""
    out = {"colour": 0.0, "shape": 0.0, "position": 0.0, "size": 0.0}
    for obj, best, same in _matches(truth, det):
        if best is None:
            continue
        out["colour"] += float(same)
        out["shape"] += float(best.shape == obj.shape)
        out["position"] += float(same and best.cell == obj.cell)
        out["size"] += float(best.size == obj.size)
    n = max(len(truth), 1)
    out = {k: v / n for k, v in out.items()}
    out["count"] = float(len(det.objects) == len(truth))
    out["background"] = float(det.background == truth_background)
    return out


def shape_readings(truth: list[ShapeObject], det: SceneDetection) -> list[tuple[str, str, str]]:
    """(asked shape, asked size, shape read) for each true object, the same judgement as ``score``'s
    shape accuracy; "nothing" where no object was found at all."""
    return [(obj.shape, obj.size, best.shape if best is not None else "nothing") for obj, best, _ in _matches(truth, det)]


def shape_breakdown(readings: list[tuple[str, str, str]], top: int = 8) -> dict:
    """Shape accuracy per asked size and per asked shape, and the commonest misreadings."""
    def accuracy(key_index: int) -> dict[str, float]:
        groups: dict[str, list[bool]] = {}
        for r in readings:
            groups.setdefault(r[key_index], []).append(r[0] == r[2])
        return {k: sum(v) / len(v) for k, v in groups.items()}

    by_size = accuracy(1)
    by_shape = accuracy(0)
    wrong: dict[str, int] = {}
    for asked, _size, read in readings:
        if asked != read:
            wrong[f"{asked} as {read}"] = wrong.get(f"{asked} as {read}", 0) + 1
    return {
        "objects": len(readings),
        "errors": sum(wrong.values()),
        "by_size": {k: by_size[k] for k in SIZES if k in by_size},
        "by_shape": {k: by_shape[k] for k in SHAPES if k in by_shape},
        "misread": dict(sorted(wrong.items(), key=lambda kv: (-kv[1], kv[0]))[:top]),
        "asked": {k: sum(1 for r in readings if r[0] == k) for k in SHAPES},
    }
