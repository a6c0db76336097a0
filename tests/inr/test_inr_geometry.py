"""Grids, marching cubes orientation, mesh SDF, Chamfer, slices, sphere tracing, volume rendering."""

import numpy as np
import pytest

from plugins.inr.fields import (
    CallableEvaluator,
    GridCache,
    GridTooLarge,
    bake_grid,
    bake_progressive,
    check_grid_memory,
    estimate_grid_memory,
)
from plugins.inr.geometry import (
    MeshSDF,
    analytic_mesh,
    analytic_sdf,
    chamfer_and_normals,
    export_mesh,
    load_mesh,
    marching_cubes,
    slice_plane,
)
from plugins.inr.render import Camera, laplace_cdf_density, render, shade, sphere_trace, volume_render

B = np.array([[-1.0, -1, -1], [1, 1, 1]])


def test_marching_cubes_faces_point_outward_for_sphere():
    grid = bake_grid(CallableEvaluator(analytic_sdf("sphere", radius=0.5)), B, 40)
    mesh = marching_cubes(grid, B)
    centres = mesh.vertices[mesh.faces].mean(1)
    outward = (mesh.face_normals() * centres).sum(-1) > 0
    assert outward.all()
    assert ((mesh.normals * mesh.vertices).sum(-1) > 0).all()  # vertex normals too
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(r.mean() - 0.5) < 0.01


def test_occupancy_fields_mesh_outward_too():
    # occupancy = high inside, iso 0.5
    occ = CallableEvaluator(lambda p: (np.linalg.norm(p, axis=1) < 0.5).astype(np.float32) * 0.8 + 0.1)
    mesh = marching_cubes(bake_grid(occ, B, 32), B, iso=0.5, inside="positive")
    centres = mesh.vertices[mesh.faces].mean(1)
    assert ((mesh.face_normals() * centres).sum(-1) > 0).mean() > 0.99


def test_no_surface_is_a_clear_error():
    with pytest.raises(ValueError, match="never crosses"):
        marching_cubes(np.ones((8, 8, 8), np.float32), B)


def test_progressive_bake_refines_near_surface_and_matches_full_grid(tmp_path):
    ev = CallableEvaluator(analytic_sdf("torus"))
    levels = list(bake_progressive(ev, B, (16, 32, 64)))
    assert [lv.resolution for lv in levels] == [16, 32, 64]
    assert levels[0].evaluated == 16**3
    assert levels[2].evaluated < 0.5 * 64**3  # only the narrow band is evaluated
    full = bake_grid(ev, B, 64)
    near = np.abs(full) < 0.1
    np.testing.assert_allclose(levels[2].grid[near], full[near], atol=1e-6)
    # the same marching-cubes surface
    a, b = marching_cubes(levels[2].grid, B), marching_cubes(full, B)
    assert len(a.faces) == len(b.faces)


def test_grid_cache_hit(tmp_path):
    calls = []

    def f(p):
        calls.append(len(p))
        return analytic_sdf("sphere")(p)

    cache = GridCache(tmp_path / "grids")
    first = list(bake_progressive(CallableEvaluator(f), B, (16, 32), cache=cache, weights_key="abc"))
    n_calls = len(calls)
    second = list(bake_progressive(CallableEvaluator(f), B, (16, 32), cache=cache, weights_key="abc"))
    assert len(calls) == n_calls  # nothing evaluated again
    assert all(lv.from_cache for lv in second)
    np.testing.assert_array_equal(first[-1].grid, second[-1].grid)
    # a new cache object (new session) finds the grids on disk
    third = list(bake_progressive(CallableEvaluator(f), B, (16, 32), cache=GridCache(tmp_path / "grids"), weights_key="abc"))
    assert all(lv.from_cache for lv in third)
    # other bounds or another network miss
    list(bake_progressive(CallableEvaluator(f), B * 1.1, (16,), cache=cache, weights_key="abc"))
    list(bake_progressive(CallableEvaluator(f), B, (16,), cache=cache, weights_key="xyz"))
    assert len(calls) == n_calls + 2


def test_memory_estimate_warns_and_refuses():
    e = estimate_grid_memory
    assert e(512) - e(256) > 7 * (e(256) - e(128))  # cubic growth past the fixed chunk cost
    _, warn = check_grid_memory(64, limit=estimate_grid_memory(64) + 1)
    assert warn and "more than half" in warn
    with pytest.raises(GridTooLarge, match=r"1024\^3 grid needs about .* GB.*resolution of \d+"):
        check_grid_memory(1024, limit=2 * 1024**3)


def test_mesh_sdf_matches_analytic_and_tolerates_open_meshes():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.9, 0.9, (3000, 3))
    box = analytic_mesh("box")
    d = MeshSDF(box)(pts)
    np.testing.assert_allclose(d, analytic_sdf("box")(pts), atol=1e-5)
    # remove two faces: not watertight, sign from the winding number still right away from the hole
    import trimesh

    sphere = analytic_mesh("sphere")
    holed = trimesh.Trimesh(sphere.vertices, sphere.faces[2:], process=False)
    m = MeshSDF(holed)
    assert not m.watertight and m.sign_method == "winding"
    far_from_hole = pts[np.linalg.norm(pts - holed.vertices[sphere.faces[0, 0]], axis=1) > 0.3][:500]
    truth = analytic_sdf("sphere")(far_from_hole)
    ok = np.abs(truth) > 0.01
    assert (np.sign(m(far_from_hole))[ok] == np.sign(truth)[ok]).all()


def test_chamfer_self_zero_and_shift_detected():
    mesh = analytic_mesh("torus")
    same = chamfer_and_normals(mesh, mesh, n=4000)
    assert same["chamfer"] < 1e-6 and same["normal_consistency"] > 0.999
    moved = mesh.copy()
    moved.apply_translation([0.2, 0, 0])
    assert chamfer_and_normals(mesh, moved, n=4000)["chamfer"] > 0.05


def test_export_and_reload_formats(tmp_path):
    grid = bake_grid(CallableEvaluator(analytic_sdf("sphere")), B, 24)
    mesh = marching_cubes(grid, B)
    for ext in ("obj", "ply", "stl"):
        path = export_mesh(mesh, tmp_path / f"m.{ext}")
        back = load_mesh(path)
        assert abs(len(back.faces) - len(mesh.faces)) <= 2
    with pytest.raises(ValueError, match="Cannot export"):
        export_mesh(mesh, tmp_path / "m.xyz")
    (tmp_path / "bad.obj").write_text("this is not a mesh")
    with pytest.raises(ValueError, match="bad.obj"):
        load_mesh(tmp_path / "bad.obj")


def test_slice_plane_values_and_zero_contour():
    s = slice_plane(CallableEvaluator(analytic_sdf("sphere", radius=0.5)), B, axis=2, offset=0.0, res=65)
    assert s.values.shape == (65, 65)
    assert s.values[32, 32] == pytest.approx(-0.5, abs=1e-5)
    assert len(s.contours) == 1
    c = s.contours[0]
    radius_px = np.linalg.norm(c - 32, axis=1) * (2 / 64)
    assert abs(radius_px.mean() - 0.5) < 0.01


def test_sphere_tracing_hits_sphere_at_right_depth():
    ev = CallableEvaluator(analytic_sdf("sphere", radius=0.5))
    cam = Camera.orbit(distance=3.0, azimuth=30, elevation=20, width=33, height=33)
    res = sphere_trace(ev, cam, max_steps=64, eps=1e-4)
    assert res.hit[16, 16]
    assert res.depth[16, 16] == pytest.approx(2.5, abs=2e-3)
    assert not res.hit[0, 0]
    # the centre normal points back at the camera
    eye_dir = cam.eye / np.linalg.norm(cam.eye)
    assert np.dot(res.normals[16, 16], eye_dir) > 0.99
    for mode in ("shaded", "normals", "depth", "cost"):
        img = shade(res, mode)
        assert img.shape == (33, 33, 3) and img.dtype == np.uint8
        assert (img[16, 16] != img[0, 0]).any()
    err = shade(res, "error", ground_truth=analytic_sdf("sphere", radius=0.45))
    assert err[16, 16].any()
    with pytest.raises(ValueError, match="ground-truth"):
        shade(res, "error")


def test_volsdf_density_and_volume_render():
    sdf = np.array([-1.0, 0.0, 1.0])
    sig = laplace_cdf_density(sdf, beta=0.1)
    assert sig[0] == pytest.approx(10 * (1 - 0.5 * np.exp(-10)), rel=1e-5)  # alpha inside
    assert sig[1] == pytest.approx(5.0)
    assert sig[2] < 1e-3
    cam = Camera.orbit(distance=3.0, width=24, height=24)
    sharp = volume_render(CallableEvaluator(analytic_sdf("sphere")), cam, beta=0.01, samples=64)
    blurry = volume_render(CallableEvaluator(analytic_sdf("sphere")), cam, beta=0.3, samples=64)
    assert sharp.opacity[12, 12] > 0.99 and sharp.opacity[0, 0] < 0.01
    # a larger beta spreads density outside the surface: the silhouette grows soft
    assert blurry.opacity[12, 17] > sharp.opacity[12, 17] + 0.05  # just outside the silhouette
    assert sharp.depth[12, 12] == pytest.approx(2.5, abs=0.05)


def test_render_helper_and_camera_convention():
    # azimuth 0, elevation 0: camera on +x looking at the origin, z up
    cam = Camera.orbit(distance=2.0, azimuth=0, elevation=0, width=8, height=8)
    np.testing.assert_allclose(cam.eye, [2, 0, 0], atol=1e-12)
    fwd, right, up = cam.basis()
    np.testing.assert_allclose(up, [0, 0, 1], atol=1e-12)
    img, res = render(CallableEvaluator(analytic_sdf("box")), cam)
    assert img.shape == (8, 8, 3) and res.hit.any()
