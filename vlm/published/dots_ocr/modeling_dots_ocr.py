# Test fixture: written for docvlm to reproduce the *interface* of the modeling_dots_ocr.py
# published with rednote-hilab/dots.ocr; not a copy of it. What it keeps as published:
#   * a Qwen2ForCausalLM subclass (1-D RoPE; module names model.layers.N, lm_head) with the
#     vision tower as a top-level attribute, vision_tower;
#   * image tokens (config.image_token_id) replaced in the embeddings by the tower's output
#     with masked_scatter, a count mismatch being an assertion error;
#   * forward's keyword parameters (past_key_values, logits_to_keep, **loss_kwargs): no
#     mm_token_type_ids, which generate() then refuses as an unused model kwarg;
#   * prepare_inputs_for_generation sends pixel_values again whenever cache_position is None,
#     which newer transformers no longer passes: the second decode step then fails.

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.qwen2 import Qwen2ForCausalLM

from .configuration_dots import DotsOCRConfig, DotsVisionConfig
from .modeling_dots_vision import DotsVisionTransformer

DOTS_VLM_MAX_IMAGES = 200


class DotsOCRForCausalLM(Qwen2ForCausalLM):
    config_class = DotsOCRConfig

    def __init__(self, config: DotsOCRConfig):
        super().__init__(config)
        if isinstance(self.config.vision_config, dict):
            self.config.vision_config = DotsVisionConfig(**self.config.vision_config)
        self.vision_tower = DotsVisionTransformer(self.config.vision_config)

    def prepare_inputs_embeds(self, input_ids, pixel_values=None, grid_thw=None, img_mask=None) -> torch.Tensor:
        inputs_embeds = self.get_input_embeddings()(input_ids)
        if pixel_values is not None:
            assert img_mask is not None
            vision_embeddings = self.vision_tower(pixel_values, grid_thw)
            assert vision_embeddings.size(0) == img_mask.sum(), f"{vision_embeddings.size(0)=}, {img_mask.sum()=}"
            inputs_embeds = inputs_embeds.masked_scatter(
                img_mask.to(inputs_embeds.device).unsqueeze(-1).expand_as(inputs_embeds),
                vision_embeddings.to(inputs_embeds.device).type(inputs_embeds.dtype),
            )
        return inputs_embeds

    def forward(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.FloatTensor | None = None,
        image_grid_thw: torch.FloatTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: list[torch.FloatTensor] | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        **loss_kwargs,
    ) -> tuple | CausalLMOutputWithPast:
        assert len(input_ids) >= 1, f"empty input_ids {input_ids.shape=}"
        if inputs_embeds is None:
            img_mask = input_ids == self.config.image_token_id
            inputs_embeds = self.prepare_inputs_embeds(input_ids, pixel_values, image_grid_thw, img_mask)
        return super().forward(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            labels=labels,
            use_cache=use_cache if use_cache is not None else self.config.use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            logits_to_keep=logits_to_keep,
            **loss_kwargs,
        )

    def prepare_inputs_for_generation(
        self,
        input_ids,
        past_key_values=None,
        inputs_embeds=None,
        pixel_values=None,
        attention_mask=None,
        cache_position=None,
        num_logits_to_keep=None,
        **kwargs,
    ):
        model_inputs = super().prepare_inputs_for_generation(
            input_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache_position=cache_position,
            num_logits_to_keep=num_logits_to_keep,
            **kwargs,
        )
        if cache_position is None or cache_position[0] == 0:
            model_inputs["pixel_values"] = pixel_values
        return model_inputs
