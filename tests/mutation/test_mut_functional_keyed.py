"""functional/keyed.py: survivors of the mutation run (issue 26)."""

import torch

from lightning_reasonattn.functional.keyed import mix


def test_mix_moves_later_keys_to_the_first_keys_device():
    """Bug class: a later key made on the default device (CPU) instead of the running hash's: mixing a CUDA key with
    a CPU tensor key fails. The meta device stands in for an accelerator."""
    out = mix(torch.arange(3, device="meta"), torch.arange(3), 7)
    assert out.device.type == "meta" and tuple(out.shape) == (3,)
