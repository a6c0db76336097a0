"""Run with ComfyUI's own Python (not the studio's): load a studio export through the node
package's loader inside a ComfyUI checkout and save what ComfyUI computes from it, for
``test_comfyui_node.py`` to compare with diffusers.

    COMFY_PYTHON comfyui_probe.py COMFYUI_DIR NODE_PACKAGE_PARENT CHECKPOINT OUT.npz PROMPT
"""

import sys

comfy_dir, node_parent, checkpoint, out, prompt = sys.argv[1:6]
# full precision everywhere, so the math can be compared exactly (by default ComfyUI stores text
# encoders in float16, also on the CPU)
sys.argv = [sys.argv[0], "--cpu", "--fp32-text-enc", "--fp32-unet", "--fp32-vae"]
sys.path[:0] = [comfy_dir, node_parent]

import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import numpy as np  # noqa: E402
import torch  # noqa: E402

from implicit_studio_comfyui.loader import load_studio_checkpoint  # noqa: E402

model, clip, vae, desc = load_studio_checkpoint(checkpoint)
cond = clip.encode_from_tokens(clip.tokenize(prompt))
g = torch.Generator().manual_seed(0)
x = torch.randn(2, desc.latent_channels, 16, 16, generator=g)
t = torch.tensor([999.0, 500.0])
unet = model.model.diffusion_model
with torch.no_grad():
    pred = unet(x, timesteps=t, context=cond.expand(2, -1, -1))
    latent = torch.randn(1, desc.latent_channels, 16, 16, generator=g)
    image = vae.decode(latent)
np.savez(out, cond=cond.float().numpy(), x=x.numpy(), t=t.numpy(), pred=pred.float().numpy(),
         latent=latent.numpy(), image=image.float().numpy(),
         sigmas=model.model.model_sampling.sigmas.float().numpy(),
         prediction=np.array(model.model.model_type.name), downscale=np.array(vae.downscale_ratio),
         scale=np.array(model.model.latent_format.scale_factor))
print("probe ok", model.model.model_type.name, tuple(cond.shape), tuple(image.shape))
