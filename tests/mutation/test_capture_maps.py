"""capture/blockwise.py's group maps (``capture_group_maps``) where the attention mask and the scale matter: a sliding
window shorter than the sequence, a scale other than ``1 / sqrt(head_dim)``, left padding; against eager maps."""

import pytest
import torch
from conftest import tiny_model
from test_capture import batch, eager_maps
from test_hostile_capture import tiny_gemma2

from lightning_reasonattn import capture_group_maps, capture_rhythm


@pytest.mark.parametrize(
    "make",
    [
        lambda: tiny_model("mistral"),  # sliding window 24
        lambda: tiny_gemma2(query_pre_attn_scalar=7, sliding_window=20),  # scale 7 ** -0.5, not head_dim ** -0.5
    ],
    ids=["mistral", "gemma2"],
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
