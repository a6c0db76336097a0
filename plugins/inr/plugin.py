"""INR plugin: fit, open, render and view implicit neural representations (2D images, 3D SDFs).

Cheap to import: stdlib + app.api only. torch, numpy, onnxruntime and Qt are imported by the
referenced modules (``plugins.inr.tools``, ``plugins.inr.view2d``, ``plugins.inr.view3d``) when a
tool runs or a viewer opens.
"""

from app.api import (ChoiceParam, FloatParam, ImageParam, IntParam, PathParam, ReaderSpec, SeedParam, ToolSpec,
                     ViewerSpec, WriterSpec, hookimpl)

REQUIRES_API = "1.1"

_ARCHS = ("siren", "relu_pe", "relu_ff", "wire", "gauss", "hashgrid")
_ARCH_LABELS = ("SIREN (sine)", "ReLU + positional encoding", "ReLU + Fourier features", "WIRE (Gabor wavelet)",
                "Gaussian activations", "Hash grid + small MLP")
_MESH_FILTERS = ("Meshes (*.obj *.ply *.stl *.off *.glb)",)
_INR_FILTERS = ("INRs (*.json *.safetensors *.pth *.pt *.ckpt *.npz *.npy *.onnx)",)


def _net_params(default_steps: int):
    return (
        ChoiceParam(name="arch", choices=_ARCHS, labels=_ARCH_LABELS, default="siren", help="network family"),
        IntParam(name="steps", default=default_steps, min=1, max=100_000, step=50, help="optimiser steps"),
        IntParam(name="hidden", default=64, min=4, max=1024, help="units per hidden layer"),
        IntParam(name="layers", default=3, min=1, max=16, help="hidden layers"),
        FloatParam(name="lr", default=0.0, min=0.0, max=1.0, step=1e-4, decimals=5, advanced=True,
                   help="Adam learning rate; 0 picks the family's default"),
    )


@hookimpl
def studio_tools():
    return [
        ToolSpec(
            id="inr-fit-image",
            title="Fit an image INR",
            description="Fit a 2D implicit neural representation (SIREN, ReLU+PE, WIRE, ...) to an image with "
                        "live loss/PSNR curves; saves the network (safetensors + JSON) and an image rendered "
                        "from it.",
            group="view3d",
            run="plugins.inr.tools:fit_image",
            results=("image", "file", "table"),
            backends=("torch",),
            params=(
                ImageParam(name="image", help="image to fit"),
                *_net_params(300),
                IntParam(name="max_side", default=128, min=8, max=2048, help="the image is downscaled to this side first"),
                IntParam(name="render_scale", default=2, min=1, max=16,
                         help="the PNG is evaluated at this multiple of the image size (not upsampled)"),
                PathParam(name="save_to", mode="dir", must_exist=False, optional=True, advanced=True,
                          help="folder for the weights (default: the studio's data folder)"),
                SeedParam(name="seed", default=0),
            ),
        ),
        ToolSpec(
            id="inr-fit-sdf",
            title="Fit a neural SDF",
            description="Fit a 3D signed distance network to a mesh (OBJ/PLY/STL) or an analytic shape, sampling "
                        "near the surface and uniformly (optional eikonal term); exports the marching-cubes mesh "
                        "and reports Chamfer distance against the reference.",
            group="view3d",
            run="plugins.inr.tools:fit_sdf",
            results=("mesh", "image", "file", "table"),
            backends=("torch", "onnx"),
            params=(
                PathParam(name="mesh", optional=True, filters=_MESH_FILTERS,
                          help="mesh to fit; empty: the analytic shape below"),
                ChoiceParam(name="shape", choices=("torus", "sphere", "box"), default="torus"),
                *_net_params(300),
                IntParam(name="points", default=4096, min=64, max=262_144, step=512, help="samples per step"),
                FloatParam(name="eikonal", default=0.0, min=0.0, max=10.0, step=0.01,
                           help="weight of the eikonal term (|grad f| = 1)"),
                IntParam(name="resolution", default=96, min=16, max=512, step=16, help="marching-cubes grid per axis"),
                PathParam(name="save_to", mode="dir", must_exist=False, optional=True, advanced=True,
                          help="folder for the weights and meshes (default: the studio's data folder)"),
                SeedParam(name="seed", default=0),
            ),
        ),
        ToolSpec(
            id="inr-render",
            title="Open and render an INR",
            description="Open a trained INR without its training code (safetensors+JSON, torch state dict or "
                        "checkpoint, flat weight vector + config, .npz, ONNX); the architecture is guessed when "
                        "no config is given. 2D: rendered at the requested size and zoom; 3D: meshed and "
                        "sphere-traced.",
            group="view3d",
            run="plugins.inr.tools:render_inr",
            results=("image", "mesh"),
            backends=("torch", "onnx"),
            params=(
                PathParam(name="inr", filters=_INR_FILTERS, help="weights file"),
                PathParam(name="config", optional=True, filters=("INR config (*.json)",),
                          help="architecture JSON (needed for flat weight vectors; else guessed)"),
                PathParam(name="latent_codes", optional=True, filters=("DeepSDF latent codes (*.pth *.pt)",),
                          help="DeepSDF decoders: the latent codes file (LatentCodes/latest.pth) to take the "
                               "shape's code from; without it a latent-conditioned decoder renders the zero code"),
                IntParam(name="latent_index", default=0, min=0,
                         help="which code of the latent codes file (the shape's index in the training split)"),
                IntParam(name="width", default=256, min=8, max=4096),
                IntParam(name="height", default=256, min=8, max=4096),
                FloatParam(name="zoom", default=1.0, min=0.01, max=1000.0, help="2D: magnification"),
                FloatParam(name="center_x", default=0.0, min=-10.0, max=10.0, advanced=True),
                FloatParam(name="center_y", default=0.0, min=-10.0, max=10.0, advanced=True),
                ChoiceParam(name="mode", choices=("shaded", "normals", "depth", "cost"), default="shaded",
                            help="3D render mode"),
                IntParam(name="resolution", default=96, min=16, max=512, step=16, help="3D: marching-cubes grid"),
                FloatParam(name="azimuth", default=45.0, min=-360.0, max=360.0, advanced=True),
                FloatParam(name="elevation", default=30.0, min=-90.0, max=90.0, advanced=True),
            ),
        ),
    ]


@hookimpl
def studio_readers():
    return [ReaderSpec(id="inr-native", title="Implicit neural representation",
                       patterns=("*.json", "*.safetensors", "*.onnx"), read="plugins.inr.tools:read_inr")]


@hookimpl
def studio_writers():
    return [WriterSpec(id="inr-mesh-export", title="Mesh (OBJ/PLY/STL)", kinds=("mesh",),
                       extensions=(".obj", ".ply", ".stl"), write="plugins.inr.tools:write_mesh")]


@hookimpl
def studio_viewers():
    return [
        ViewerSpec(id="inr-3d", title="3D SDF viewer", kind="mesh", widget="plugins.inr.view3d:SDFViewer", priority=10),
        # an INR fit's weights (a file result) open in the viewer of their dimension
        ViewerSpec(id="inr-3d-weights", title="3D SDF viewer", kind="file", widget="plugins.inr.view3d:SDFViewer",
                   priority=10),
        ViewerSpec(id="inr-2d-weights", title="2D INR viewer", kind="file", widget="plugins.inr.view2d:INRImageViewer",
                   priority=10),
        ViewerSpec(id="inr-2d", title="2D INR viewer", kind="image", widget="plugins.inr.view2d:INRImageViewer",
                   priority=-10),
    ]
