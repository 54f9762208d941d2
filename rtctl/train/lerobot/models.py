"""Small LeRobot policies built locally (no hub): the ACT that `rtctl train lerobot_act` fine-tunes, and
tiny random-initialised ACT / Diffusion (DDIM) / SmolVLA checkpoints for tests and latency benchmarks.

SmolVLA normally pulls its SmolVLM2 backbone's config and processor from the hub even with
``load_vlm_weights=False``; `tiny_smolvlm` writes a stand-in backbone folder instead (a SmolVLM config, a
word-level tokenizer with SmolVLM's image special tokens, SmolVLM image/video processors), and SmolVLA is
pointed at that folder by ``vlm_model_name``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

JOINTS = 6
TARGET_DIM = 4
CAMERA = "workspace"  # the sim arm's camera (rtctl.sim.arm_env.CAMERA_NAME)


def features(image_size: Optional[int] = None, env_state: bool = True) -> tuple[dict, dict]:
    """LeRobot input/output features of the sim arm: joint state, target (environment state), camera."""
    from lerobot.configs.types import FeatureType, PolicyFeature

    inputs = {"observation.state": PolicyFeature(FeatureType.STATE, (JOINTS,))}
    if env_state:
        inputs["observation.environment_state"] = PolicyFeature(FeatureType.ENV, (TARGET_DIM,))
    if image_size:
        inputs[f"observation.images.{CAMERA}"] = PolicyFeature(FeatureType.VISUAL, (3, image_size, image_size))
    return inputs, {"action": PolicyFeature(FeatureType.ACTION, (JOINTS,))}


def act_config(chunk_size: int = 50, image_size: Optional[int] = None, dim_model: int = 128,
               n_heads: int = 4, dim_feedforward: int = 512, n_encoder_layers: int = 2,
               n_decoder_layers: int = 1, use_vae: bool = False, lr: float = 1e-4, **kw: Any):
    from lerobot.configs.types import NormalizationMode
    from lerobot.policies.act.configuration_act import ACTConfig

    inputs, outputs = features(image_size)
    # LeRobot's default map leaves ENV features un-normalised; the target's xyz varies by centimetres,
    # which a small ACT then barely sees.
    norm = {k: NormalizationMode.MEAN_STD for k in ("VISUAL", "STATE", "ENV", "ACTION")}
    return ACTConfig(input_features=inputs, output_features=outputs, chunk_size=chunk_size, normalization_mapping=norm,
                     n_action_steps=chunk_size, dim_model=dim_model, n_heads=n_heads,
                     dim_feedforward=dim_feedforward, n_encoder_layers=n_encoder_layers,
                     n_decoder_layers=n_decoder_layers, use_vae=use_vae, pretrained_backbone_weights=None,
                     optimizer_lr=lr, optimizer_lr_backbone=lr, device="cpu", **kw)


def diffusion_config(image_size: int = 32, horizon: int = 8, n_action_steps: int = 4, steps: int = 5):
    """A small DDIM Diffusion policy (the default DDPM/100 steps at full width takes ~22 s a chunk here)."""
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

    inputs, outputs = features(image_size, env_state=False)
    return DiffusionConfig(input_features=inputs, output_features=outputs, horizon=horizon,
                           n_action_steps=n_action_steps, n_obs_steps=2, crop_shape=None,
                           down_dims=(32, 64), kernel_size=3, diffusion_step_embed_dim=32,
                           spatial_softmax_num_keypoints=8, noise_scheduler_type="DDIM",
                           num_train_timesteps=20, num_inference_steps=steps, device="cpu")


SMOLVLM_SPECIAL = {"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
                   "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>",
                   "video_token": "<video>"}
TASK_WORDS = "reach whack the target touch move arm to it a red ball".split()


def tiny_smolvlm(folder: str | Path, image_size: int = 64) -> Path:
    """Write a tiny SmolVLM backbone folder (config + tokenizer + processors) usable offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    folder = Path(folder)
    words = ["<pad>", "<unk>", "<s>", "</s>", *SMOLVLM_SPECIAL.values(), *TASK_WORDS]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", extra_special_tokens=SMOLVLM_SPECIAL)
    patch = 16
    cfg = SmolVLMConfig(
        text_config=dict(model_type="llama", vocab_size=64, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         max_position_embeddings=512),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=patch),
        scale_factor=2, image_token_id=fast.convert_tokens_to_ids("<image>"), pad_token_id=0)
    cfg.save_pretrained(folder)
    size = {"longest_edge": image_size}
    images = SmolVLMImageProcessor(do_resize=False, do_image_splitting=False, max_image_size=size, size=size)
    SmolVLMProcessor(image_processor=images, tokenizer=fast, video_processor=SmolVLMVideoProcessor(),
                     image_seq_len=(image_size // patch // 2) ** 2).save_pretrained(folder)
    return folder


def smolvla_config(vlm_folder: str | Path, image_size: int = 64, chunk_size: int = 10, steps: int = 3):
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    inputs, outputs = features(image_size, env_state=False)
    return SmolVLAConfig(input_features=inputs, output_features=outputs, vlm_model_name=str(vlm_folder),
                         load_vlm_weights=False, resize_imgs_with_padding=(image_size, image_size),
                         num_vlm_layers=4, chunk_size=chunk_size, n_action_steps=chunk_size, num_steps=steps,
                         device="cpu")


def build_policy(cfg: Any, stats: dict):
    """Random-initialised policy for ``cfg`` plus its processors normalising with ``stats``."""
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    policy = get_policy_class(cfg.type)(cfg)
    pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    return policy, pre, post


def save_checkpoint(folder: str | Path, policy: Any, pre: Any, post: Any) -> Path:
    """A folder `LeRobotPolicy.load` (and LeRobot's own ``from_pretrained``) reads."""
    folder = Path(folder)
    for part in (policy, pre, post):
        part.save_pretrained(folder)
    return folder


def unit_stats(cfg: Any) -> dict:
    """Normalisation statistics for a random model: mean/std/min/max per feature (not all ones, so a
    missed (un)normalisation shows up in comparisons)."""
    import torch

    out = {}
    for key, ft in {**cfg.input_features, **cfg.output_features}.items():
        n = ft.shape[0]
        shape = (n,) if len(ft.shape) == 1 else (n, 1, 1)
        g = torch.linspace(0.2, 0.8, n).reshape(shape)
        out[key] = {"mean": g, "std": 0.5 + g, "min": g - 1.0, "max": g + 1.0}
    return out
