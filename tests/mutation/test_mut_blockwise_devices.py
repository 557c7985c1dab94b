"""capture/blockwise.py on a device other than torch's default one: every tensor the capture makes (the causal block,
the positions, the recorders' sums) must be made on the device of the layer's query, never on the default device.
On a GPU a tensor left on the default device (the CPU) makes the next op raise; on a CPU the same slip shows when the
default device is another one (``meta``): the CPU results must then equal those of a plain CPU call."""

import torch

from lightning_reasonattn.capture.blockwise import BlockAttention, MapRecorder, StatsRecorder

B, H, H_KV, N, D = 2, 4, 2, 12, 8


def _inputs():
    """Query, key, a left-padded key mask and a response mask for a two-sequence batch, on the CPU."""
    g = torch.Generator().manual_seed(0)
    query, key = torch.randn(B, H, N, D, generator=g) * 2, torch.randn(B, H_KV, N, D, generator=g) * 2
    key_mask = torch.ones(B, N, dtype=torch.bool)
    key_mask[1, :3] = False
    resp = torch.zeros(B, N, dtype=torch.bool)
    resp[:, 5:] = True
    return query, key, key_mask, resp


def _block_attention(query, key, key_mask, resp):
    attn = BlockAttention(3, query, key, None, key_mask, sliding_window=4)
    return [attn(0, 5), attn(5, N)]


def _stats(query, key, key_mask, resp):
    rec = StatsRecorder({3: 0}, resp, key_mask, window=3, horizon=(1, 4), block_size=4)
    rec.observe(3, query, key, None, None, {"sliding_window": 6})
    trace = rec.trace([3], head_fraction=0.5, q=0.5, look_back=1)
    return [rec.head_dist, rec.head_waad, rec.head_fai, trace.waad, trace.fai, trace.head_distance]


def _maps(query, key, key_mask, resp, groups):
    rec = MapRecorder({3: 0}, key_mask, groups, start=2, stop=N, block_size=4)
    rec.observe(3, query, key, None, None, {})
    return [rec.sums["local"], rec.sums["global"]]


def _same_under_another_default_device(run, *args):
    """``run(*args)`` on CPU inputs gives the same CPU tensors with ``meta`` as torch's default device."""
    expected = run(*args)
    with torch.device("meta"):
        got = run(*args)
    for e, g in zip(expected, got, strict=True):
        assert g.device.type == "cpu"
        torch.testing.assert_close(g, e, equal_nan=True, rtol=0, atol=0)


def test_block_attention_makes_its_tensors_on_the_query_device():
    """The causal block and the positions (for the window) of ``BlockAttention`` are made on the query's device:
    with them on the default device instead, the masking mixes devices (a GPU run raises)."""
    _same_under_another_default_device(_block_attention, *_inputs())


def test_stats_recorder_makes_its_sums_on_the_query_device():
    """``StatsRecorder``'s head distance, WAAD and FAI sums are made on the query's device, not the default one."""
    _same_under_another_default_device(_stats, *_inputs())


def test_map_recorder_makes_its_sums_on_the_query_device():
    """``MapRecorder``'s head weights and map sums are made on the query's device, not the default one."""
    groups = {"local": torch.tensor([[0, 1], [2, 3]]), "global": torch.tensor([[3, 3], [1, 6]])}
    _same_under_another_default_device(_maps, *_inputs(), groups)
