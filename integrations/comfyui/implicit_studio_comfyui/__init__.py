"""ComfyUI custom nodes for models exported by Implicit Studio (``implicit-studio export-checkpoint``).

Install by copying this folder into ``ComfyUI/custom_nodes/``, or ``pip install`` its project
(``integrations/comfyui``) into ComfyUI's Python and add ``custom_nodes/implicit_studio.py``
holding ``from implicit_studio_comfyui import *``. See README.md.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
