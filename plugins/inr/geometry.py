"""Shapes, meshes and their comparison (compute layer: numpy/scipy/skimage/trimesh, no Qt).

* analytic SDFs (sphere, box, torus) usable from numpy and torch;
* :class:`MeshSDF`: signed distance to a triangle mesh without rtree -- exact point-triangle
  distances to candidate faces found with a KD-tree, sign from the generalised winding number
  (tolerates small holes in meshes that are not watertight);
* marching cubes with outward-facing triangles, mesh export, slices, Chamfer distance and
  normal consistency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

SHAPES = ("sphere", "box", "torus")


# ---------------------------------------------------------------------- analytic SDFs
def _lib(x):
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return torch
    except ImportError:  # pragma: no cover
        pass
    return np


def sdf_sphere(p, radius: float = 0.5):
    lib = _lib(p)
    return lib.sqrt((p * p).sum(-1)) - radius


def sdf_box(p, half=(0.4, 0.3, 0.35)):
    lib = _lib(p)
    h = lib.asarray(half, dtype=p.dtype) if lib is np else lib.as_tensor(half, dtype=p.dtype, device=p.device)
    q = lib.abs(p) - h
    zero = 0.0
    outside = (q.clip(min=zero) if lib is np else q.clamp(min=zero))
    outside = lib.sqrt((outside * outside).sum(-1))
    inside_m = q.max(-1) if lib is np else q.max(-1).values
    inside = inside_m.clip(max=zero) if lib is np else inside_m.clamp(max=zero)
    return outside + inside


def sdf_torus(p, major: float = 0.5, minor: float = 0.2):
    """Torus around the z axis (z is up in the 3D viewer)."""
    lib = _lib(p)
    qx = lib.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2) - major
    return lib.sqrt(qx * qx + p[..., 2] ** 2) - minor


def analytic_sdf(name: str, **params: float) -> Callable:
    """``f(points (N,3)) -> (N,)`` for sphere(radius), box(half), torus(major, minor)."""
    if name == "sphere":
        return lambda p: sdf_sphere(p, **params)
    if name == "box":
        return lambda p: sdf_box(p, **params)
    if name == "torus":
        return lambda p: sdf_torus(p, **params)
    raise ValueError(f"Unknown shape {name!r}; choose one of {', '.join(SHAPES)}.")


def analytic_mesh(name: str, **params: float):
    """A trimesh of the analytic shape (reference for Chamfer distance)."""
    import trimesh

    if name == "sphere":
        return trimesh.creation.icosphere(subdivisions=4, radius=params.get("radius", 0.5))
    if name == "box":
        half = params.get("half", (0.4, 0.3, 0.35))
        return trimesh.creation.box(extents=[2 * h for h in half])
    if name == "torus":
        return trimesh.creation.torus(major_radius=params.get("major", 0.5), minor_radius=params.get("minor", 0.2),
                                      major_sections=64, minor_sections=32)
    raise ValueError(f"Unknown shape {name!r}; choose one of {', '.join(SHAPES)}.")


# ---------------------------------------------------------------------- mesh SDF
def load_mesh(path: str | Path):
    """Read OBJ/PLY/STL (or anything trimesh reads) as one triangle mesh; clear error otherwise."""
    import trimesh

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such mesh file: {path}")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=True)
    except Exception as exc:
        raise ValueError(f"{path.name} could not be read as a mesh ({exc}).") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"{path.name} holds no triangles.")
    return mesh


def normalize_mesh(mesh, extent: float = 0.8):
    """Centre a mesh and scale it so its bounding box fits in [-extent, extent]^3; returns (mesh, scale, centre)."""
    m = mesh.copy()
    centre = m.bounds.mean(axis=0)
    scale = extent / max(float(np.abs(m.bounds - centre).max()), 1e-12)
    m.apply_translation(-centre)
    m.apply_scale(scale)
    return m, scale, centre


def _closest_point_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest points on triangles (a, b, c) to points p (all (N, 3)); Ericson's region tests."""
    ab, ac, ap = b - a, c - a, p - a
    d1 = (ab * ap).sum(-1)
    d2 = (ac * ap).sum(-1)
    bp = p - b
    d3 = (ab * bp).sum(-1)
    d4 = (ac * bp).sum(-1)
    cp = p - c
    d5 = (ab * cp).sum(-1)
    d6 = (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = 1.0 / (va + vb + vc)
        v = vb * denom
        w = vc * denom
        res = a + ab * v[:, None] + ac * w[:, None]  # interior
        # edge bc
        m = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        res = np.where(m[:, None], b + (c - b) * t[:, None], res)
        # edge ac
        m = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
        t = d2 / (d2 - d6)
        res = np.where(m[:, None], a + ac * t[:, None], res)
        # edge ab
        m = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
        t = d1 / (d1 - d3)
        res = np.where(m[:, None], a + ab * t[:, None], res)
    # vertex regions
    res = np.where(((d6 >= 0) & (d5 <= d6))[:, None], c, res)
    res = np.where(((d3 >= 0) & (d4 <= d3))[:, None], b, res)
    res = np.where(((d1 <= 0) & (d2 <= 0))[:, None], a, res)
    return res


def winding_number(points: np.ndarray, triangles: np.ndarray, chunk: int | None = None) -> np.ndarray:
    """Generalised winding number of a triangle soup at points (Jacobson et al.; van Oosterom-Strackee)."""
    pts = np.asarray(points, dtype=np.float64)
    tri = np.asarray(triangles, dtype=np.float64)
    out = np.empty(len(pts))
    chunk = chunk or max(1, int(4_000_000 // max(len(tri), 1)))
    for s in range(0, len(pts), chunk):
        p = pts[s: s + chunk, None, None, :]
        v = tri[None] - p  # (n, F, 3, 3)
        a, b, c = v[..., 0, :], v[..., 1, :], v[..., 2, :]
        la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
        det = np.einsum("nfi,nfi->nf", a, np.cross(b, c))
        den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        out[s: s + chunk] = np.arctan2(det, den).sum(-1) / (2 * math.pi)
    return out


class MeshSDF:
    """Signed distance to a triangle mesh (negative inside).

    Distances are exact to the closest of ``k`` candidate faces found through a KD-tree on face
    samples. For watertight meshes the sign comes from the angle-weighted pseudo-normal of the
    closest feature (face, edge or vertex; Baerentzen & Aanaes), which is exact; for meshes that are
    not watertight it comes from the generalised winding number (> 0.5 inside), which tolerates
    holes but costs O(points x faces).
    """

    def __init__(self, mesh, k: int = 16, samples_per_face: int = 4, sign: str = "auto"):
        from scipy.spatial import cKDTree

        self.mesh = mesh
        self.watertight = bool(mesh.is_watertight)
        self.sign_method = ("pseudonormal" if self.watertight else "winding") if sign == "auto" else sign
        self.triangles = np.asarray(mesh.triangles, dtype=np.float64)
        F = len(self.triangles)
        bary = np.array([[1 / 3, 1 / 3, 1 / 3], [2 / 3, 1 / 6, 1 / 6], [1 / 6, 2 / 3, 1 / 6], [1 / 6, 1 / 6, 2 / 3]])
        bary = bary[: max(1, samples_per_face)]
        pts = np.einsum("sk,fkd->fsd", bary, self.triangles).reshape(-1, 3)
        self.tree = cKDTree(np.concatenate([pts, self.triangles.reshape(-1, 3)]))
        self._face_of_sample = np.concatenate([np.repeat(np.arange(F), len(bary)), np.repeat(np.arange(F), 3)])
        self.k = min(k, len(self._face_of_sample))
        # pseudo-normals
        fn = np.asarray(mesh.face_normals, dtype=np.float64)
        self.face_normals = fn
        faces = np.asarray(mesh.faces)
        angles = np.asarray(mesh.face_angles, dtype=np.float64)
        vn = np.zeros((len(mesh.vertices), 3))
        for j in range(3):
            np.add.at(vn, faces[:, j], fn * angles[:, j: j + 1])
        self.vertex_pn = vn
        # edge pseudo-normals: sum of the normals of the faces sharing the edge
        edges = np.sort(np.stack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], axis=1), axis=-1)  # (F,3,2)
        flat = edges.reshape(-1, 2)
        uniq, inv = np.unique(flat, axis=0, return_inverse=True)
        en = np.zeros((len(uniq), 3))
        np.add.at(en, inv.reshape(-1), np.repeat(fn, 3, axis=0))
        self.face_edge_pn = en[inv.reshape(F, 3)]  # (F, 3): edges (0,1), (1,2), (2,0)
        self.faces = faces

    def closest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(distance, closest point, face index) for each point."""
        pts = np.asarray(points, dtype=np.float64)
        _, idx = self.tree.query(pts, k=self.k)
        idx = idx.reshape(len(pts), -1)
        faces = self._face_of_sample[idx]  # (N, k)
        best_d = np.full(len(pts), np.inf)
        best_p = np.zeros_like(pts)
        best_f = np.zeros(len(pts), dtype=np.int64)
        for j in range(faces.shape[1]):
            tri = self.triangles[faces[:, j]]
            cp = _closest_point_on_triangles(pts, tri[:, 0], tri[:, 1], tri[:, 2])
            d = np.linalg.norm(pts - cp, axis=-1)
            better = d < best_d
            best_d = np.where(better, d, best_d)
            best_p[better] = cp[better]
            best_f[better] = faces[better, j]
        return best_d, best_p, best_f

    def unsigned(self, points: np.ndarray) -> np.ndarray:
        return self.closest(points)[0]

    def _pseudonormal(self, cp: np.ndarray, f: np.ndarray) -> np.ndarray:
        tri = self.triangles[f]
        a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
        v0, v1, v2 = b - a, c - a, cp - a
        d00 = (v0 * v0).sum(-1)
        d01 = (v0 * v1).sum(-1)
        d11 = (v1 * v1).sum(-1)
        d20 = (v2 * v0).sum(-1)
        d21 = (v2 * v1).sum(-1)
        den = np.maximum(d00 * d11 - d01 * d01, 1e-30)
        wb = (d11 * d20 - d01 * d21) / den
        wc = (d00 * d21 - d01 * d20) / den
        wa = 1.0 - wb - wc
        bary = np.stack([wa, wb, wc], -1)
        tol = 1e-7
        zero = bary <= tol
        n = self.face_normals[f].copy()
        # on an edge: exactly one barycentric coordinate is zero
        one = zero.sum(-1) == 1
        # edge opposite vertex k: k=0 -> edge (1,2) index 1; k=1 -> edge (2,0) index 2; k=2 -> edge (0,1) index 0
        opp = np.array([1, 2, 0])
        k = np.argmax(zero, axis=-1)
        n[one] = self.face_edge_pn[f[one], opp[k[one]]]
        # on a vertex: two are zero; the vertex is the one that is not
        two = zero.sum(-1) >= 2
        vk = np.argmax(~zero, axis=-1)
        n[two] = self.vertex_pn[self.faces[f[two], vk[two]]]
        return n

    def __call__(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float64)
        d, cp, f = self.closest(pts)
        if self.sign_method == "winding":
            inside = winding_number(pts, self.triangles) > 0.5
        else:
            inside = ((pts - cp) * self._pseudonormal(cp, f)).sum(-1) < 0
        return np.where(inside, -d, d).astype(np.float32)


# ---------------------------------------------------------------------- marching cubes
@dataclass
class Mesh:
    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int32
    normals: np.ndarray  # (V, 3) float32 vertex normals, outward

    def to_trimesh(self):
        import trimesh

        return trimesh.Trimesh(self.vertices, self.faces, vertex_normals=self.normals, process=False)

    def face_normals(self) -> np.ndarray:
        v = self.vertices[self.faces]
        n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def marching_cubes(grid: np.ndarray, bounds: np.ndarray, iso: float = 0.0, inside: str = "negative") -> Mesh:
    """Extract the iso surface of a baked grid in world coordinates with outward-facing triangles.

    ``inside``: ``"negative"`` for SDFs (values grow outward), ``"positive"`` for occupancy/density.
    """
    from skimage import measure

    grid = np.asarray(grid, dtype=np.float32)
    if not (grid.min() <= iso <= grid.max()):
        raise ValueError(
            f"The field never crosses the iso level {iso:g} in these bounds (values {grid.min():.3g}..{grid.max():.3g}); "
            "there is no surface to mesh."
        )
    bounds = np.asarray(bounds, dtype=np.float64)
    spacing = tuple((bounds[1] - bounds[0]) / (np.array(grid.shape) - 1))
    # Measured with scikit-image 0.26: for a field that grows outward (an SDF) the default
    # 'descent' winds faces counter-clockwise seen from outside (right-hand normals point out);
    # 'ascent' winds them inward. skimage's returned normals point inward in both cases, so
    # vertex normals are recomputed from the outward faces.
    direction = "descent" if inside == "negative" else "ascent"
    verts, faces, _, _ = measure.marching_cubes(grid, level=iso, spacing=spacing, gradient_direction=direction)
    verts = verts + bounds[0]
    normals = _vertex_normals(verts, faces)
    return Mesh(verts.astype(np.float32), faces.astype(np.int32), normals.astype(np.float32))


def _vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals following the faces' right-hand winding."""
    tri = verts[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(verts)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=-1, keepdims=True), 1e-12)


def export_mesh(mesh: Mesh | Any, path: str | Path) -> Path:
    """Write OBJ, PLY or STL (chosen by the extension)."""
    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    if ext not in ("obj", "ply", "stl"):
        raise ValueError(f"Cannot export a mesh as '.{ext}'; use .obj, .ply or .stl.")
    tm = mesh.to_trimesh() if isinstance(mesh, Mesh) else mesh
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp." + ext)
    tm.export(str(tmp), file_type=ext)
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------- comparisons
def chamfer_and_normals(mesh_a, mesh_b, n: int = 20000, seed: int = 0) -> dict[str, float]:
    """Symmetric Chamfer distance and normal consistency between two meshes.

    ``n`` points are sampled on each surface and their exact distances to the *other surface*
    (closest point on its triangles, not on its samples) are averaged: chamfer = (mean d(A->B) +
    mean d(B->A)) / 2, so a mesh compared with itself scores 0. Normal consistency is the mean
    |cos| between the normal at each sample and the other mesh's face normal at the closest point.
    """
    import trimesh

    ta = mesh_a.to_trimesh() if isinstance(mesh_a, Mesh) else mesh_a
    tb = mesh_b.to_trimesh() if isinstance(mesh_b, Mesh) else mesh_b
    pa, fa = trimesh.sample.sample_surface(ta, n, seed=seed)
    pb, fb = trimesh.sample.sample_surface(tb, n, seed=seed + 1)
    na, nb = np.asarray(ta.face_normals)[fa], np.asarray(tb.face_normals)[fb]
    da, _, ca = MeshSDF(tb, sign="pseudonormal").closest(pa)
    db, _, cb = MeshSDF(ta, sign="pseudonormal").closest(pb)
    cos_a = np.abs((na * np.asarray(tb.face_normals)[ca]).sum(-1))
    cos_b = np.abs((nb * np.asarray(ta.face_normals)[cb]).sum(-1))
    return {
        "chamfer": float(0.5 * (da.mean() + db.mean())),
        "chamfer_l2_squared": float(0.5 * ((da**2).mean() + (db**2).mean())),
        "normal_consistency": float(0.5 * (cos_a.mean() + cos_b.mean())),
        "samples": int(n),
    }


# ---------------------------------------------------------------------- slices
@dataclass
class Slice:
    values: np.ndarray  # (res, res) values of output 0
    points: np.ndarray  # (res, res, 3)
    axis: int
    offset: float
    extent: tuple[float, float, float, float]  # u0, u1, v0, v1 in world units
    contours: list[np.ndarray]  # zero level set, each (M, 2) in (row, col) pixel coordinates


def slice_plane(evaluator, bounds: np.ndarray, axis: int = 2, offset: float = 0.0, res: int = 128,
                iso: float = 0.0, cancel: Any = None) -> Slice:
    """Values on an axis-aligned plane (axis 0/1/2 = x/y/z) at ``offset``, with its iso contours."""
    from skimage import measure

    bounds = np.asarray(bounds, dtype=np.float64)
    if axis not in (0, 1, 2):
        raise ValueError("axis must be 0 (x), 1 (y) or 2 (z)")
    if not bounds[0, axis] <= offset <= bounds[1, axis]:
        raise ValueError(f"offset {offset:g} lies outside the bounds on that axis.")
    u_ax, v_ax = [a for a in range(3) if a != axis]
    u = np.linspace(bounds[0, u_ax], bounds[1, u_ax], res, dtype=np.float32)
    v = np.linspace(bounds[0, v_ax], bounds[1, v_ax], res, dtype=np.float32)
    vv, uu = np.meshgrid(v, u, indexing="ij")  # rows follow v, columns follow u
    pts = np.zeros((res, res, 3), np.float32)
    pts[..., u_ax] = uu
    pts[..., v_ax] = vv
    pts[..., axis] = offset
    vals = evaluator(pts.reshape(-1, 3), cancel=cancel)[:, 0].reshape(res, res)
    contours = measure.find_contours(vals, iso) if vals.min() <= iso <= vals.max() else []
    ext = (float(u[0]), float(u[-1]), float(v[0]), float(v[-1]))
    return Slice(vals, pts, axis, offset, ext, contours)


def slice_from_grid(grid: np.ndarray, bounds: np.ndarray, axis: int, offset: float, iso: float = 0.0) -> Slice:
    """A slice read from a baked grid (nearest plane along ``axis``; instant)."""
    from skimage import measure

    bounds = np.asarray(bounds, dtype=np.float64)
    res = grid.shape[axis]
    i = int(round((offset - bounds[0, axis]) / (bounds[1, axis] - bounds[0, axis]) * (res - 1)))
    i = min(max(i, 0), res - 1)
    vals = np.take(grid, i, axis=axis).T  # rows = v axis, cols = u axis
    u_ax, v_ax = [a for a in range(3) if a != axis]
    contours = measure.find_contours(vals, iso) if vals.min() <= iso <= vals.max() else []
    ext = (float(bounds[0, u_ax]), float(bounds[1, u_ax]), float(bounds[0, v_ax]), float(bounds[1, v_ax]))
    return Slice(vals, np.empty((0, 3)), axis, offset, ext, contours)


def sdf_colormap(values: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Blue (inside, negative) / red (outside) heat map with iso bands and a black zero band, uint8
    RGB. Without ``scale`` each sign is scaled by its own 98th percentile, so a thin inside is as
    visible as a wide outside."""
    v = np.asarray(values, dtype=np.float32)
    if scale is None:
        neg, pos = -v[v < 0], v[v > 0]
        s_neg = float(np.percentile(neg, 98)) if neg.size else 1.0
        s_pos = float(np.percentile(pos, 98)) if pos.size else 1.0
    else:
        s_neg = s_pos = float(scale)
    s_neg, s_pos = max(s_neg, 1e-6), max(s_pos, 1e-6)
    t = np.clip(np.where(v >= 0, v / s_pos, v / s_neg), -1, 1)
    pos_m = t >= 0
    rgb = np.empty(v.shape + (3,), np.float32)
    rgb[..., 0] = np.where(pos_m, 1.0, 1.0 + 0.85 * t)
    rgb[..., 1] = np.where(pos_m, 1.0 - 0.65 * t, 1.0 + 0.45 * t)
    rgb[..., 2] = np.where(pos_m, 1.0 - 0.85 * t, 1.0)
    period = np.where(v >= 0, s_pos, s_neg) / 5
    rgb *= (0.85 + 0.15 * np.cos(2 * math.pi * v / period))[..., None]
    rgb[np.abs(t) < 0.015] = 0.0
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
