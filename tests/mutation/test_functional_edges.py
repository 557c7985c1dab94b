"""functional/: edge cases the mutation run (`make mutate`) found untested, against hand-worked values and the spec.

The ``"middle"`` layers of a model whose layer count leaves remainder 2 when divided by 3 (32 layers, the common case):
``2 * L // 3`` and ``2 * (L // 3)`` agree for every other count (issue 26).
"""

import math
from fractions import Fraction

import pytest
import torch

from lightning_reasonattn.functional import select_layers

# ------------------------------------------------------------------------------------------ middle layers


def spec_middle_layers(num_layers: int) -> list[int]:
    """docs/rhythm.md in plain Python: round(linspace(L // 3, 2L // 3, 5)), half to even, duplicates dropped.

    Exact fractions, so a value such as 15.5 is exactly half way (Python's round on a Fraction rounds half to even).
    """
    lo, hi = num_layers // 3, (2 * num_layers) // 3
    return sorted({round(lo + Fraction(hi - lo) * i / 4) for i in range(5)})


@pytest.mark.parametrize(
    ("num_layers", "expected"),
    [
        (32, [10, 13, 16, 18, 21]),  # linspace(10, 21, 5) = 10, 12.75, 15.5, 18.25, 21; 15.5 -> 16 (half to even)
        (2, [0, 1]),  # linspace(0, 1, 5) = 0, .25, .5, .75, 1; .5 -> 0
        (5, [1, 2, 3]),  # linspace(1, 3, 5) = 1, 1.5, 2, 2.5, 3; 1.5 -> 2, 2.5 -> 2
        (14, [4, 5, 6, 8, 9]),  # linspace(4, 9, 5) = 4, 5.25, 6.5, 7.75, 9; 6.5 -> 6
        (36, [12, 15, 18, 21, 24]),  # Qwen3-4B / 8B
        (28, [9, 11, 14, 16, 18]),  # linspace(9, 18, 5) = 9, 11.25, 13.5, 15.75, 18; 13.5 -> 14
    ],
)
def test_middle_layers_hand_worked(num_layers, expected):
    assert select_layers(num_layers, "middle") == expected


def test_middle_layers_match_the_spec_for_every_count():
    """Every layer count from 1 to 120, all three remainders modulo 3, against the spec's formula."""
    for num_layers in range(1, 121):
        assert select_layers(num_layers, "middle") == spec_middle_layers(num_layers), num_layers


# ------------------------------------------------------------------------------------------ RhythmTrace.to


def test_trace_to_moves_every_tensor_and_keeps_the_rest():
    from lightning_reasonattn.functional import RhythmTrace

    b, n = 1, 4
    flags = torch.tensor([[False, True, False, True]])
    trace = RhythmTrace(
        torch.rand(b, n), torch.rand(b, n), torch.rand(b, n), flags, flags, flags, flags, torch.rand(b, 2, 3),
        torch.zeros(b, 1, dtype=torch.long), torch.ones(b, 1, dtype=torch.long), [4, 7], flags, q=0.25, look_back=2,
    )  # fmt: skip
    moved = trace.to("meta")
    for name, value in vars(moved).items():
        original = getattr(trace, name)
        if isinstance(original, torch.Tensor):
            assert value.device.type == "meta" and value.shape == original.shape and value.dtype == original.dtype
        else:
            assert value == original, name
    assert trace.waad.device.type == "cpu"  # a copy: the original stays


def test_profile_sums_names_a_bad_bucket_count():
    from lightning_reasonattn.functional.bootstrap import profile_sums

    with pytest.raises(ValueError, match="num_buckets=0"):
        profile_sums(torch.ones(1, 3), torch.ones(1, 3, dtype=torch.bool), 0)


# ------------------------------------------------------------------------------------------ RhythmSettings


def test_settings_store_plain_python_values():
    """numpy numbers, a tuple of layers and a YAML list for the horizon are stored as the plain values they stand for
    (what the checkpoint's hyper-parameters and the logs then hold)."""
    import numpy as np

    from lightning_reasonattn import RhythmSettings

    s = RhythmSettings(
        layers=(np.int64(3), 4), window=np.int64(7), horizon=[2, 9], head_fraction=np.float64(0.5),
        q=np.float32(0.25), look_back=np.int64(1), block_size=np.int64(64),
    )  # fmt: skip
    assert (s.layers, s.window, s.horizon, s.head_fraction, s.q, s.look_back, s.block_size) == (
        [3, 4],
        7,
        (2, 9),
        0.5,
        0.25,
        1,
        64,
    )
    for value in (*s.layers, s.window, *s.horizon, s.look_back, s.block_size):
        assert type(value) is int
    assert type(s.head_fraction) is float and type(s.q) is float
    with pytest.raises(ValueError, match=r"look_back=0 is invalid: .* \(the spec's default 3\)"):
        RhythmSettings(look_back=0)


def test_no_warning_when_one_token_has_a_future(monkeypatch):
    import warnings

    from lightning_reasonattn.functional import attention as attention_math
    from lightning_reasonattn.functional import fai

    monkeypatch.setattr(attention_math, "_WARNED_SHORT_RESPONSES", False)  # as a fresh process
    attn = torch.ones(4, 4).tril()
    attn = attn / attn.sum(-1, keepdim=True)
    response = torch.tensor([False, False, True, True])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = fai(attn, response, horizon=(1, 2))  # token 2 has token 3 in its horizon: one token, no warning
    assert f[2].item() == pytest.approx(1 / 4) and torch.isnan(f[3])


# ------------------------------------------------------------------------------------------ keyed draws


def test_keyed_uniform_is_the_documented_formula_in_float64():
    from lightning_reasonattn.functional.keyed import hash32, keyed_gumbel, keyed_uniform

    keys = torch.tensor([0, 1, 2**31, 2**32 - 1, 123456789])
    u = keyed_uniform(keys)
    assert u.dtype == torch.float64
    expected = [(h + 0.5) / 2**32 for h in hash32(keys).tolist()]  # exact in float64
    assert u.tolist() == expected and all(0 < v < 1 for v in expected)
    assert keyed_uniform(keys, torch.float32).dtype == torch.float32
    assert keyed_gumbel(keys, torch.float32).dtype == torch.float32
    g = keyed_gumbel(keys)
    assert g.tolist() == pytest.approx([-math.log(-math.log(v)) for v in expected], rel=1e-12)


def test_mix_reads_keys_of_any_integer_dtype_as_int64():
    from lightning_reasonattn.functional.keyed import mix

    for dtype in (torch.int32, torch.int16, torch.uint8):
        assert torch.equal(mix(torch.tensor([5, 9], dtype=dtype), 7), mix(torch.tensor([5, 9]), 7))
        assert torch.equal(mix(3, torch.tensor([5, 9], dtype=dtype)), mix(3, torch.tensor([5, 9])))
