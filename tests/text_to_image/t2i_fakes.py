"""Tensor names and shapes of fake checkpoints for the classification tests."""

DM = "model.diffusion_model."

SD1_KEYS = {
    DM + "input_blocks.0.0.weight": (320, 4, 3, 3),
    DM + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
    "first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3),
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (8, 768),
}
SD2_KEYS = {
    DM + "input_blocks.0.0.weight": (320, 4, 3, 3),
    DM + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
    "first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3),
    "cond_stage_model.model.token_embedding.weight": (8, 1024),
}
SD1_INPAINT_KEYS = dict(SD1_KEYS, **{DM + "input_blocks.0.0.weight": (320, 9, 3, 3)})
SDXL_KEYS = {
    DM + "input_blocks.0.0.weight": (320, 4, 3, 3),
    DM + "label_emb.0.0.weight": (1280, 2816),
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (8, 768),
    "conditioner.embedders.1.model.token_embedding.weight": (8, 1280),
    "first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3),
}
SD3_KEYS = {
    DM + "joint_blocks.0.x_block.attn.qkv.weight": (12, 4),
    DM + "x_embedder.proj.weight": (4, 16, 2, 2),
}
FLUX_KEYS = {
    "double_blocks.0.img_attn.qkv.weight": (12, 4),
    "single_blocks.0.linear1.weight": (12, 4),
}
LORA_KEYS = {
    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320),
    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": (320, 4),
}
VAE_KEYS = {"encoder.down.0.block.0.conv1.weight": (4, 4, 3, 3), "decoder.up.0.block.0.conv1.weight": (4, 4, 3, 3)}
UNKNOWN_KEYS = {"backbone.layer1.weight": (4, 4), "backbone.layer2.weight": (4, 4), "head.fc.weight": (2, 4)}
