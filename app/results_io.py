"""Turning results into file bytes and back (no Qt).

=============  ======  ===========================================================
kind           ext     encoding
=============  ======  ===========================================================
image, mask    .png    PNG; run parameters in text chunks (``storage.pngmeta``)     
mesh           .ply    binary little-endian PLY (vertices, optional normals/colours, faces)
field          .npz    ``values``, ``bounds``, ``name``
distribution   .npz    ``support``, ``weights``, ``steps``, ``representation``, ``series_labels``
table          .csv    header row then rows
file           any     the bytes as given
=============  ======  ===========================================================

numpy and PIL are imported inside the functions.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any, Optional

from app import api

@dataclass
class Encoded:
    """A result ready for ``SessionStore.add_result``."""

    kind: str
    data: bytes
    ext: str
    width: Optional[int] = None
    height: Optional[int] = None
    shape: Optional[tuple[int, ...]] = None
    metadata: Optional[dict] = None


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: repr(o)))


def encode_png(array, info: Optional[dict] = None, meta: Optional[dict] = None) -> bytes:
    """PNG bytes of an ``HxW`` or ``HxWxC`` uint8 array. ``info`` (``tool``, ``params``, ``seed``,
    ``plugin``, ``plugin_version``, ``model``, ``model_hash``, ``device``, ``backend``, plus
    anything else) is written with ``storage.pngmeta``: the studio's JSON chunk, from which the
    run can be restored, and the A1111-style ``parameters`` text other tools read; ``meta`` is the
    result's own record (the generated size, the scheduler used) for that text."""
    from storage import pngmeta

    info = _json_safe(dict(info or {}))
    if not info.get("tool"):
        return pngmeta.encode_png(array)
    params = info.pop("params", {}) or {}
    known = {k: info.pop(k, None) for k in ("plugin", "plugin_version", "model_hash", "device", "backend")}
    tool, seed, model = info.pop("tool"), info.pop("seed", None), info.pop("model", None)
    implicit = pngmeta.our_json(tool_id=tool, params=params, seed=seed, model_ref=model, **known, **info)
    height, width = array.shape[:2]
    text = pngmeta.format_parameters(params, seed=seed, width=width, height=height, model=model,
                                     model_hash=known["model_hash"], meta=meta, extra={"Tool": tool})
    return pngmeta.encode_png(array, implicit=implicit, parameters=text)


def read_png_info(data: bytes) -> dict:
    """The studio's JSON stored by :func:`encode_png` (``{}`` if none)."""
    from storage import pngmeta

    return dict(pngmeta.read_png_metadata(data).implicit or {})


def encode(result: api.Result, run_info: Optional[dict] = None) -> Encoded:
    """Encode a result; ``run_info`` (tool, params, seed...) goes into image text chunks."""
    import numpy as np

    meta = _json_safe(dict(result.metadata))
    if result.label:
        meta.setdefault("label", result.label)
    if isinstance(result, api.ImageResult):
        data = encode_png(result.image, run_info, meta)
        h, w = result.image.shape[:2]
        return Encoded("image", data, ".png", w, h, tuple(result.image.shape), meta)
    if isinstance(result, api.MaskResult):
        data = encode_png(result.mask, dict(run_info or {}))
        h, w = result.mask.shape
        return Encoded("mask", data, ".png", w, h, tuple(result.mask.shape), meta)
    if isinstance(result, api.MeshResult):
        data = encode_ply(result)
        meta.update({"vertices": int(len(result.vertices)), "faces": int(len(result.faces))})
        return Encoded("mesh", data, ".ply", None, None, (len(result.vertices), len(result.faces)), meta)
    if isinstance(result, api.ScalarFieldResult):
        buf = io.BytesIO()
        np.savez_compressed(buf, values=result.values, bounds=np.asarray(result.bounds, dtype=np.float64),
                            name=np.asarray(result.name))
        meta.setdefault("bounds", [list(b) for b in result.bounds])
        return Encoded("field", buf.getvalue(), ".npz", None, None, tuple(result.values.shape), meta)
    if isinstance(result, api.DistributionSeries):
        buf = io.BytesIO()
        np.savez_compressed(buf, support=result.support, weights=result.weights, steps=result.steps,
                            representation=np.asarray(result.representation),
                            series_labels=np.asarray(list(result.series_labels), dtype=str))
        return Encoded("distribution", buf.getvalue(), ".npz", None, None, tuple(result.weights.shape), meta)
    if isinstance(result, api.TableResult):
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(result.columns)
        for row in result.rows:
            writer.writerow(row)
        return Encoded("table", text.getvalue().encode("utf-8"), ".csv", None, None,
                       (len(result.rows), len(result.columns)), meta)
    if isinstance(result, api.FileResult):
        return Encoded("file", result.read_bytes(), result.ext or ".bin", None, None, None, meta)
    raise TypeError(f"cannot store a result of type {type(result).__name__}")


def encode_ply(mesh: api.MeshResult) -> bytes:
    """Binary little-endian PLY of a mesh."""
    import numpy as np

    n, m = len(mesh.vertices), len(mesh.faces)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}",
              "property float x", "property float y", "property float z"]
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if mesh.normals is not None:
        header += ["property float nx", "property float ny", "property float nz"]
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    if mesh.colors is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        if mesh.colors.shape[1] == 4:
            header.append("property uchar alpha")
            fields.append(("alpha", "u1"))
    header += [f"element face {m}", "property list uchar int vertex_indices", "end_header"]
    verts = np.empty(n, dtype=fields)
    verts["x"], verts["y"], verts["z"] = mesh.vertices.T
    if mesh.normals is not None:
        verts["nx"], verts["ny"], verts["nz"] = mesh.normals.T
    if mesh.colors is not None:
        for i, name in enumerate(("red", "green", "blue", "alpha")[: mesh.colors.shape[1]]):
            verts[name] = mesh.colors[:, i]
    faces = np.empty(m, dtype=[("n", "u1"), ("i", "<i4", (3,))])
    faces["n"] = 3
    faces["i"] = mesh.faces.astype(np.int32)
    return ("\n".join(header) + "\n").encode("ascii") + verts.tobytes() + faces.tobytes()


def decode_ply(data: bytes) -> api.MeshResult:
    """Read a PLY written by :func:`encode_ply`; other PLY variants go through trimesh."""
    import numpy as np

    end = data.find(b"end_header\n")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError("not a PLY file")
    header = data[:end].decode("ascii", "replace").splitlines()
    body = data[end + len(b"end_header\n"):]
    if "format binary_little_endian 1.0" not in header:
        return _decode_with_trimesh(data)
    types = {"float": "<f4", "uchar": "u1", "int": "<i4", "double": "<f8"}
    fields, n, m, element = [], 0, 0, None
    for line in header:
        parts = line.split()
        if parts[:2] == ["element", "vertex"]:
            n, element = int(parts[2]), "vertex"
        elif parts[:2] == ["element", "face"]:
            m, element = int(parts[2]), "face"
        elif parts and parts[0] == "property" and element == "vertex":
            if parts[1] not in types:
                return _decode_with_trimesh(data)
            fields.append((parts[2], types[parts[1]]))
        elif parts and parts[0] == "property" and element == "face":
            if parts[1:4] != ["list", "uchar", "int"]:
                return _decode_with_trimesh(data)
    vdt = np.dtype(fields)
    verts = np.frombuffer(body, dtype=vdt, count=n)
    fdt = np.dtype([("n", "u1"), ("i", "<i4", (3,))])
    faces = np.frombuffer(body, dtype=fdt, count=m, offset=n * vdt.itemsize)
    if m and not np.all(faces["n"] == 3):
        return _decode_with_trimesh(data)
    names = verts.dtype.names
    vertices = np.stack([verts["x"], verts["y"], verts["z"]], axis=1)
    normals = np.stack([verts["nx"], verts["ny"], verts["nz"]], axis=1) if "nx" in names else None
    colors = None
    if "red" in names:
        cols = ["red", "green", "blue"] + (["alpha"] if "alpha" in names else [])
        colors = np.stack([verts[c] for c in cols], axis=1)
    return api.MeshResult(vertices=vertices, faces=faces["i"].astype(np.int64), normals=normals, colors=colors)


def _decode_with_trimesh(data: bytes) -> api.MeshResult:
    import trimesh

    mesh = trimesh.load(io.BytesIO(data), file_type="ply", process=False)
    return api.MeshResult(vertices=mesh.vertices, faces=mesh.faces)


def decode(kind: str, data: bytes, ext: str = "", metadata: Optional[dict] = None) -> api.Result:
    """Rebuild a result from stored bytes."""
    import numpy as np

    meta = dict(metadata or {})
    label = str(meta.get("label", "") or "")
    if kind in ("image", "mask"):
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            if kind == "mask":
                return api.MaskResult(mask=np.asarray(img.convert("L")), metadata=meta, label=label)
            mode = "RGBA" if "A" in img.getbands() else "RGB"
            return api.ImageResult(image=np.asarray(img.convert(mode)), metadata=meta, label=label)
    if kind == "mesh":
        mesh = decode_ply(data)
        mesh.metadata, mesh.label = meta, label
        return mesh
    if kind == "field":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return api.ScalarFieldResult(values=z["values"], bounds=[tuple(b) for b in z["bounds"]],
                                         name=str(z["name"]), metadata=meta, label=label)
    if kind == "distribution":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return api.DistributionSeries(support=z["support"], weights=z["weights"], steps=z["steps"],
                                          representation=str(z["representation"]),
                                          series_labels=tuple(str(s) for s in z["series_labels"]),
                                          metadata=meta, label=label)
    if kind == "table":
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
        if not rows:
            return api.TableResult(columns=(), rows=[], metadata=meta, label=label)
        return api.TableResult(columns=tuple(rows[0]), rows=[_parse_row(r) for r in rows[1:]], metadata=meta, label=label)
    return api.FileResult(data=data, ext=ext or ".bin", metadata=meta, label=label)


def _parse_cell(text: str) -> Any:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            continue
    return text


def _parse_row(row: list[str]) -> tuple:
    return tuple(_parse_cell(c) for c in row)

