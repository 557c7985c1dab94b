"""capture/blockwise.py's group maps (``capture_group_maps``) where the attention mask and the scale matter: a sliding
window shorter than the sequence, a scale other than ``1 / sqrt(head_dim)``, left padding; against eager maps."""

import pytest
import torch
from conftest import tiny_model
from test_capture import batch, eager_maps
from test_hostile_capture import tiny_gemma2

from lightning_reasonattn import capture_group_maps, capture_rhythm


def tiny_qwen2_moe():
    """Qwen2-MoE with sliding-window layers: its attention gets the window in the 4-D mask only (the call carries no
    ``sliding_window``), so the maps must be read through the layer's mask."""
    from transformers import AutoModelForCausalLM, Qwen2MoeConfig

    torch.manual_seed(0)
    config = Qwen2MoeConfig(
        vocab_size=97, hidden_size=48, intermediate_size=96, num_hidden_layers=6, num_attention_heads=4,
        num_key_value_heads=2, moe_intermediate_size=32, shared_expert_intermediate_size=32, num_experts=2,
        num_experts_per_tok=1, use_sliding_window=True, sliding_window=20, layer_types=["sliding_attention"] * 6,
    )  # fmt: skip
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()


@pytest.mark.parametrize(
    "make",
    [
        lambda: tiny_model("mistral"),  # sliding window 24
        lambda: tiny_gemma2(query_pre_attn_scalar=7, sliding_window=20),  # scale 7 ** -0.5, not head_dim ** -0.5
        tiny_qwen2_moe,  # window 20 in the mask only
    ],
    ids=["mistral", "gemma2", "qwen2_moe"],
)
def test_group_maps_match_eager_maps_with_a_window_and_a_scale(make):
    model = make()
    ids, am, resp = batch(b=2, n=60)
    am[1, :5] = 0  # left padding in the second row
    resp[1, :5] = False
    trace = capture_rhythm(model, ids, am, resp)
    maps = capture_group_maps(model, ids, trace, am, block_size=16)
    dense, _ = eager_maps(model, ids, am)
    flat = dense.flatten(1, 2)  # [B, L_sel * H, N, N]
    for b in range(2):
        for name, heads in (("local", trace.local_heads), ("global", trace.global_heads)):
            expected = flat[b, heads[b]].mean(0)
            rows = am[b].bool()  # padding rows are not defined
            torch.testing.assert_close(maps[name][b][rows].double(), expected[rows], atol=1e-5, rtol=0)
