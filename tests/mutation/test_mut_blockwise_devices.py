"""capture/blockwise.py with the model on another device than torch's default one and than the masks: every tensor
the capture makes (the causal block, the positions, the recorders' sums) must be made on the device of the layer's
query, and the masks the user gives (on the CPU) must be moved there. On a GPU a slip makes the next op raise (a tensor
left on the CPU meets the GPU data). On a CPU it shows two ways: with ``meta`` as torch's default device, a tensor made
without ``device=`` lands on meta; and with the query and key on a second device that computes (``_Far``: CPU numbers
that say they are elsewhere, refusing, as CUDA does, any op that mixes them with CPU tensors), a mask not moved there
raises. Either way the results must equal those of a plain CPU call."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

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


# Flat head indices ``slot * H + h``: head 6 is in another layer (slot 1), head 3 counts twice in row 0's group.
_GROUPS = {"local": torch.tensor([[0, 1], [2, 3]]), "global": torch.tensor([[3, 3], [1, 6]])}


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
    _same_under_another_default_device(_maps, *_inputs(), _GROUPS)


class _Far(torch.Tensor):
    """A tensor of real CPU numbers that reports another device (``meta``); ops on it run under ``_TwoDevices``."""

    @staticmethod
    def __new__(cls, inner):
        return torch.Tensor._make_wrapper_subclass(
            cls,
            inner.shape,
            strides=inner.stride(),
            storage_offset=inner.storage_offset(),
            dtype=inner.dtype,
            device="meta",
        )

    def __init__(self, inner):
        self.inner = inner

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError(f"{func} on a far tensor outside _TwoDevices")


def _near(x):
    return x.inner if isinstance(x, _Far) else x


class _TwoDevices(TorchDispatchMode):
    """The CPU and a second device (``_Far``, named ``meta``) with CUDA's rules: an op mixing the two raises (a CPU
    tensor of no dimension, a scalar, excepted); a result is far when an input is, or when made with ``device=meta``."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        tensors = [x for x in tree_flatten((args, kwargs))[0] if isinstance(x, torch.Tensor)]
        far = any(isinstance(x, _Far) for x in tensors)
        if far and any(not isinstance(x, _Far) and x.dim() > 0 for x in tensors):
            raise RuntimeError(f"{func}: expected all tensors to be on the same device, found the CPU and meta")
        if kwargs.get("device") is not None:  # a factory or a move: the result is where it was asked to be
            far = torch.device(kwargs["device"]).type == "meta"
            kwargs["device"] = torch.device("cpu")
        near_args, near_kwargs = tree_map(_near, (args, kwargs))
        out = func(*near_args, **near_kwargs)
        return tree_map(lambda x: _Far(x) if far and isinstance(x, torch.Tensor) else x, out)


def _same_with_the_data_on_another_device(run, query, key, *masks):
    """``run`` with the query and key on the second device and the masks on the CPU (as a user gives them) gives,
    brought back, the tensors of the plain CPU call, all on the second device."""
    expected = run(query, key, *masks)
    with _TwoDevices():
        got = run(_Far(query), _Far(key), *masks)
    for e, g in zip(expected, got, strict=True):
        assert isinstance(g, _Far)
        torch.testing.assert_close(g.inner, e, equal_nan=True, rtol=0, atol=0)


def test_block_attention_moves_the_key_mask_to_the_query_device():
    """``BlockAttention`` moves the CPU padding mask to the query's device (left there, masking the padded keys mixes
    devices)."""
    _same_with_the_data_on_another_device(_block_attention, *_inputs())


def test_stats_recorder_moves_the_masks_to_the_query_device():
    """``StatsRecorder`` moves the CPU response mask to the query's device, in ``observe`` (the response rows
    weighting each block) and in ``trace`` (the counts dividing the sums)."""
    _same_with_the_data_on_another_device(_stats, *_inputs())


def test_map_recorder_moves_the_head_groups_to_the_query_device():
    """``MapRecorder`` moves the CPU head groups to the query's device (they index the head weights there)."""
    _same_with_the_data_on_another_device(_maps, *_inputs(), _GROUPS)
