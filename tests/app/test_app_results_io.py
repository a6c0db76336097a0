"""Results survive encoding to session files and decoding back."""

from __future__ import annotations

import numpy as np

from app import api, results_io


def roundtrip(res, info=None):
    enc = results_io.encode(res, info)
    return enc, results_io.decode(enc.kind, enc.data, enc.ext, enc.metadata)


def test_image_png_with_run_parameters():
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    enc, back = roundtrip(api.ImageResult(image=img, metadata={"a": 1}),
                          {"tool": "noise-image", "params": {"prompt": "a cat", "steps": 3}, "seed": 9})
    assert (enc.kind, enc.ext, enc.width, enc.height) == ("image", ".png", 7, 5)
    assert np.array_equal(back.image, img) and back.metadata["a"] == 1
    meta = results_io.read_png_info(enc.data)
    assert meta["tool_id"] == "noise-image" and meta["params"]["prompt"] == "a cat" and meta["seed"] == 9


def test_mask_mesh_field_distribution_table_file():
    _, m = roundtrip(api.MaskResult(mask=np.eye(4, dtype=bool)))
    assert isinstance(m, api.MaskResult) and np.array_equal(m.bool_mask, np.eye(4, dtype=bool))
    mesh = api.MeshResult(vertices=np.arange(12, dtype=np.float32).reshape(4, 3), faces=[[0, 1, 2], [1, 2, 3]],
                          normals=np.ones((4, 3)), colors=np.full((4, 3), 7, np.uint8))
    enc, back = roundtrip(mesh)
    assert enc.ext == ".ply" and enc.metadata["faces"] == 2
    assert np.array_equal(back.vertices, mesh.vertices) and np.array_equal(back.faces, mesh.faces)
    assert np.array_equal(back.normals, mesh.normals) and np.array_equal(back.colors, mesh.colors)
    import trimesh  # an independent PLY reader agrees

    import io
    tm = trimesh.load(io.BytesIO(enc.data), file_type="ply", process=False)
    assert tm.faces.tolist() == [[0, 1, 2], [1, 2, 3]]
    _, f = roundtrip(api.ScalarFieldResult(values=np.ones((2, 3, 4)), bounds=[(0, 1), (0, 2), (0, 3)], name="sdf"))
    assert f.values.shape == (2, 3, 4) and f.bounds[2] == (0.0, 3.0) and f.name == "sdf"
    d = api.DistributionSeries(support=[0, 1, 2], weights=np.full((4, 2, 3), 1 / 3), series_labels=("left", "right"),
                               representation="quantile")
    _, d2 = roundtrip(d)
    assert d2.representation == "quantile" and d2.series_labels == ("left", "right") and d2.weights.shape == (4, 2, 3)
    _, t = roundtrip(api.TableResult(columns=("name", "x"), rows=[("a", 1), ("b, c", 2.5)]))
    assert t.rows == [("a", 1), ("b, c", 2.5)]
    enc, fb = roundtrip(api.FileResult(data=b"\x00abc", ext="bin"))
    assert enc.ext == ".bin" and fb.read_bytes() == b"\x00abc"
