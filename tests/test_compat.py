"""lightning_reasonattn.compat against the installed dependencies: every private API it wraps still does what the
package relies on.

Each check compares with an independent reference (what the dependency's public behaviour shows, a dense
computation) and, when a dependency has changed under the package, fails with compat's message: the dependency,
its installed version, the private name and what changed.
"""

from __future__ import annotations

import csv
import importlib.metadata
import inspect
import math
import types
import warnings

import lightning.pytorch as pl
import pytest
import torch
from conftest import tiny_model
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger

from lightning_reasonattn import compat
from lightning_reasonattn.compat import PrivateAPIError


def require(ok: bool, dist: str, name: str, what: str) -> None:
    """Fail with compat's message when ``ok`` is false."""
    if not ok:
        pytest.fail(str(PrivateAPIError(dist, name, what)), pytrace=False)


def require_parameters(func, names: list[str], dist: str, name: str) -> None:
    """Fail with compat's message unless ``func``'s first parameters are ``names`` (what compat passes)."""
    params = list(inspect.signature(func).parameters)
    require(params[: len(names)] == names, dist, name, f"takes ({', '.join(params)}), not ({', '.join(names)}, ...)")


def quiet_trainer(tmp_path, **kwargs) -> pl.Trainer:
    args = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    return pl.Trainer(**{**args, **kwargs})


def test_the_message_names_the_dependency_its_version_and_the_name():
    message = str(PrivateAPIError("torch", "Thing._gone", "is gone"))
    assert message.startswith(f"torch {importlib.metadata.version('torch')}: Thing._gone is gone.")
    assert "lightning_reasonattn/compat.py" in message
    with pytest.raises(PrivateAPIError, match=r"^torch \S+: math\._nothing is gone"):
        compat._private(math, "_nothing", "torch")
    with pytest.raises(PrivateAPIError, match=r"^transformers \S+: SimpleNamespace\._attn_implementation_internal"):
        compat.set_attn_implementation(types.SimpleNamespace(), "sdpa")  # would only add an unused attribute
    assert "(not installed)" in str(PrivateAPIError("no-such-distribution-xyz", "x._y", "is gone"))


# ---------------------------------------------------------------------------------------------- lightning
class _Stop(Exception):
    pass


class _ProbeCLI(LightningCLI):
    """LightningCLI with the hooks ReasonattnCLI overrides, recording what compat reads; stops before building."""

    seen: dict = {}

    def _prepare_subcommand_parser(self, klass, subcommand, **kwargs):
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        self.seen.setdefault("arguments", {})[subcommand] = compat.cli_method_arguments(self, subcommand)
        return parser

    def _parse_ckpt_path(self):
        self.seen["ckpt_path_hook"] = True

    def before_instantiate_classes(self):
        self.seen["trainer"] = compat.cli_config_value(self, self.config, "trainer", default={})
        raise _Stop


def test_lightning_cli_calls_the_overridden_hooks_and_fills_what_compat_reads():
    from lightning_reasonattn.grpo.cli import ReasonattnCLI

    version = importlib.metadata.version("lightning")
    for name in compat.LIGHTNING_CLI_HOOKS:
        require(hasattr(LightningCLI, name), "lightning", f"LightningCLI.{name}", "is gone")
        theirs = list(inspect.signature(getattr(LightningCLI, name)).parameters)
        ours = list(inspect.signature(getattr(ReasonattnCLI, name)).parameters)
        require(theirs == ours, "lightning", f"LightningCLI.{name}", f"takes {theirs}, ReasonattnCLI's override {ours}")

    require_parameters(LightningCLI._get, ["self", "config", "key", "default"], "lightning", "LightningCLI._get")
    _ProbeCLI.seen = {}
    with warnings.catch_warnings():  # args given on purpose, under pytest's own command line
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        with pytest.raises(_Stop):
            _ProbeCLI(BoringModel, args=["fit", "--trainer.max_steps", "3", "--seed_everything", "0"])
    seen = _ProbeCLI.seen
    require(seen.get("ckpt_path_hook", False), "lightning", "LightningCLI._parse_ckpt_path", "is no longer called")
    # The reference: Trainer.fit's own parameters, less those LightningCLI fills itself (lightning {version}).
    skip = LightningCLI.subcommands()["fit"]
    expected = {p for p in inspect.signature(pl.Trainer.fit).parameters if p != "self" and p not in skip}
    got = set(seen.get("arguments", {}).get("fit", []))
    require(got == expected, "lightning", "LightningCLI._subcommand_method_arguments['fit']", f"is {got} ({version})")
    assert {"ckpt_path", "weights_only"} <= got  # what ReasonattnCLI reads
    max_steps = seen.get("trainer", {}).get("max_steps")
    require(max_steps == 3, "lightning", "LightningCLI._get", f"read trainer.max_steps={max_steps!r}, not 3")


class _TwoStepsPerBatch(BoringModel):
    """Manual optimization with two optimizer steps per batch: global_step counts 2 per batch, the log step 1."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        for opt in self.optimizers():
            loss = self.step(batch)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        self.log("probe", float(batch_idx))

    def configure_optimizers(self):
        return [torch.optim.SGD(self.layer.parameters(), lr=0.1), torch.optim.SGD(self.layer.parameters(), lr=0.1)]


class _Record(pl.Callback):
    def __init__(self):
        self.steps, self.attached = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append((compat.logging_step(trainer), trainer.global_step))
        self.attached.append(compat.attached_trainer(pl_module))


def test_attached_trainer_and_the_step_lightning_logs_at(tmp_path):
    module = _TwoStepsPerBatch()
    require(hasattr(module, "_trainer"), "lightning", "LightningModule._trainer", "is gone")
    assert compat.attached_trainer(module) is None
    with pytest.raises(RuntimeError, match="not attached"):
        module.trainer  # noqa: B018  (why compat needs the private: the public property raises)

    record = _Record()
    trainer = quiet_trainer(tmp_path, max_steps=6, logger=CSVLogger(tmp_path), log_every_n_steps=1, callbacks=[record])
    trainer.fit(module)
    assert all(t is trainer for t in record.attached) and len(record.attached) == 3
    epoch_loop = trainer.fit_loop.epoch_loop
    require(hasattr(epoch_loop, "_batches_that_stepped"), "lightning",
            "trainer.fit_loop.epoch_loop._batches_that_stepped", "is gone")  # fmt: skip
    with open(f"{trainer.logger.log_dir}/metrics.csv") as fh:
        logged = [int(row["step"]) for row in csv.DictReader(fh) if row.get("probe")]
    # The reference is Lightning's own log of self.log("probe"): the callbacks must log at the same steps.
    assert [step for step, _ in record.steps] == logged == [0, 1, 2]
    assert [global_step for _, global_step in record.steps] == [2, 4, 6]  # so global_step would not do


def test_is_local_path(tmp_path):
    from lightning.fabric.utilities import cloud_io

    name = "lightning.fabric.utilities.cloud_io._is_local_file_protocol"
    require_parameters(compat._private(cloud_io, "_is_local_file_protocol", "lightning"), ["path"], "lightning", name)
    assert compat.is_local_path(tmp_path / "last.ckpt") and compat.is_local_path(str(tmp_path / "a.ckpt"))
    assert compat.is_local_path("file:///tmp/last.ckpt")
    assert not compat.is_local_path("s3://bucket/last.ckpt") and not compat.is_local_path("memory://last.ckpt")


# ---------------------------------------------------------------------------------------------- torch
def test_ddp_ignore_keeps_ddp_off_the_named_parameters(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)

        def forward(self, x):
            return self.used(x)

    def two_steps(ignore: bool) -> None:
        net = Net()
        if ignore:
            compat.ddp_ignore(net, ["unused.weight", "unused.bias"])
        ddp = DistributedDataParallel(net)
        for _ in range(2):
            ddp(torch.ones(2, 3)).sum().backward()

    name = "DistributedDataParallel._set_params_and_buffers_to_ignore_for_model"
    ignore = compat._private(DistributedDataParallel, name.split(".")[1], "torch")
    require_parameters(ignore, ["module", "params_and_buffers_to_ignore"], "torch", name)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        # The control: DDP waits for the gradient of a trainable parameter the forward never used.
        with pytest.raises(RuntimeError, match="finished reduction"):
            two_steps(ignore=False)
        try:
            two_steps(ignore=True)
        except PrivateAPIError:
            raise
        except RuntimeError as err:
            require(False, "torch", name, f"no longer keeps DDP off the named parameters ({str(err).splitlines()[0]})")
    finally:
        dist.destroy_process_group()


def test_lr_scheduler_last_lr_key():
    def scheduler():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    state = scheduler().state_dict()
    key = compat.LR_SCHEDULER_LAST_LR
    require(key in state, "torch", f"LRScheduler.state_dict()[{key!r}]", f"is gone (keys: {sorted(state)})")
    state[key] = [0.0123]
    restored = scheduler()
    restored.load_state_dict(state)
    require(restored.get_last_lr() == [0.0123], "torch", f"LRScheduler.state_dict()[{key!r}]", "is not get_last_lr()")


# ---------------------------------------------------------------------------------------------- transformers
def test_attn_implementation_is_what_the_forward_dispatches_on():
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    model = tiny_model("llama").eval()
    assert compat.attn_implementation(model.config) == "sdpa"
    ids = torch.randint(0, 97, (2, 12))
    with torch.no_grad():
        reference = model(ids).logits
    calls = []

    def counting(module, *args, **kwargs):
        calls.append(module.layer_idx)
        return ALL_ATTENTION_FUNCTIONS["sdpa"](module, *args, **kwargs)

    AttentionInterface.register("compat_test_counting", counting)
    AttentionMaskInterface.register("compat_test_counting", ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    compat.set_attn_implementation(model.config, "compat_test_counting")
    try:
        with torch.no_grad():
            logits = model(ids).logits
    finally:
        compat.set_attn_implementation(model.config, "sdpa")
    layers = list(range(model.config.num_hidden_layers))
    require(calls == layers, "transformers", "PretrainedConfig._attn_implementation_internal",
            f"no longer selects the attention function (calls per layer: {calls})")  # fmt: skip
    torch.testing.assert_close(logits, reference)
    assert compat.attn_implementation(model.config) == "sdpa"


def test_unregister_attention_undoes_register():
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    before = (set(ALL_ATTENTION_FUNCTIONS), set(ALL_MASK_ATTENTION_FUNCTIONS))
    AttentionInterface.register("compat_test_gone", ALL_ATTENTION_FUNCTIONS["sdpa"])
    AttentionMaskInterface.register("compat_test_gone", ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    assert "compat_test_gone" in ALL_ATTENTION_FUNCTIONS and "compat_test_gone" in ALL_MASK_ATTENTION_FUNCTIONS
    compat.unregister_attention("compat_test_gone")
    after = (set(ALL_ATTENTION_FUNCTIONS), set(ALL_MASK_ATTENTION_FUNCTIONS))
    require(after == before, "transformers", "GeneralInterface._global_mapping",
            "no longer holds what register() adds (the name is still registered)")  # fmt: skip
    compat.unregister_attention("compat_test_gone")  # a name that is not there: nothing to do


def test_eager_attention_function_equals_a_dense_attention():
    model = tiny_model("llama").eval()
    module = model.model.layers[0].self_attn
    eager = compat.eager_attention_function(module)
    name = f"{type(module).__module__}.eager_attention_forward"
    require_parameters(eager, ["module", "query", "key", "value", "attention_mask"], "transformers", name)
    params = inspect.signature(eager).parameters
    require({"scaling", "dropout"} <= set(params), "transformers", name, f"takes no scaling or dropout: {list(params)}")
    torch.manual_seed(0)
    heads, kv_heads, n, d = model.config.num_attention_heads, model.config.num_key_value_heads, 7, module.head_dim
    q, k, v = torch.randn(2, heads, n, d), torch.randn(2, kv_heads, n, d), torch.randn(2, kv_heads, n, d)
    out, weights = eager(module, q, k, v, None, dropout=0.0, scaling=d**-0.5)
    rep = heads // kv_heads  # grouped-query attention: each key/value head serves `rep` query heads
    probs = (q @ k.repeat_interleave(rep, 1).transpose(-1, -2) * d**-0.5).softmax(-1)
    torch.testing.assert_close(weights, probs)
    torch.testing.assert_close(out, (probs @ v.repeat_interleave(rep, 1)).transpose(1, 2))


# ---------------------------------------------------------------------------------------------- bitsandbytes
def _quantized_layer():
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbf

    torch.manual_seed(0)
    dense = torch.nn.Linear(64, 32)
    layer = bnb.nn.Linear4bit(64, 32, compute_dtype=torch.float32, quant_type="nf4")
    layer.load_state_dict(dense.state_dict())
    layer = layer.to("cpu")  # quantizes
    return layer, bnbf.dequantize_4bit(layer.weight.data, layer.weight.quant_state)


def _repacks() -> bool:
    """Whether this bitsandbytes repacks 4-bit weights for its bfloat16 CPU kernel: since 0.49.0 (0.47 and 0.48
    never do, and have neither private name)."""
    from packaging.version import Version

    return Version(importlib.metadata.version("bitsandbytes")) >= Version("0.49.0")


def test_unpack_cpu_4bit_restores_the_weight_dequantize_reads():
    import bitsandbytes.functional as bnbf

    layer, reference = _quantized_layer()
    weight = layer.weight
    compat.unpack_cpu_4bit(weight)  # not packed: nothing to do
    torch.testing.assert_close(bnbf.dequantize_4bit(weight.data, weight.quant_state), reference)
    if not _repacks():
        return  # no repacking, nothing to undo: the no-op above is all there is
    from bitsandbytes.nn import modules

    name = "bitsandbytes.nn.modules._convert_weight_packed_for_cpu_inverse"
    inverse = compat._private(modules, "_convert_weight_packed_for_cpu_inverse", "bitsandbytes")
    require_parameters(inverse, ["packed_weight", "quant_state"], "bitsandbytes", name)
    # What Linear4bit.forward does in eval mode on an AVX512-BF16 CPU (called directly: any CPU can run it)
    pack = getattr(bnbf, "_convert_weight_packed_for_cpu", None)
    require(pack is not None, "bitsandbytes", "bitsandbytes.functional._convert_weight_packed_for_cpu", "is gone")
    weight.data, weight.quant_state = pack(weight.data, weight.quant_state)
    assert weight.quant_state.packing_format_for_cpu
    compat.unpack_cpu_4bit(weight)
    require(not getattr(weight.quant_state, "packing_format_for_cpu", False), "bitsandbytes", name,
            "leaves the weight packed")  # fmt: skip
    # The repacking rounded the block scales to bfloat16 (why models.exact_cpu_4bit prevents it): the weight
    # comes back to bfloat16 precision, relative error <= 2^-9 from the scales and 2^-9 from the result's dtype.
    unpacked = bnbf.dequantize_4bit(weight.data, weight.quant_state).float()
    torch.testing.assert_close(unpacked, reference, rtol=2**-8, atol=1e-7)


def test_the_cpu_bf16_flag_keeps_the_4bit_weight_exact():
    from lightning_reasonattn.models import exact_cpu_4bit

    layer, reference = _quantized_layer()
    flag = compat.BNB_CPU_BF16_FLAG
    require(hasattr(layer, flag) or not _repacks(), "bitsandbytes", f"Linear4bit.{flag}", "is gone")
    exact_cpu_4bit(layer)
    assert getattr(layer, flag, False) is False
    x = torch.randn(3, 64)
    with torch.no_grad():
        y = layer.eval()(x)  # eval mode, no grad: where bitsandbytes >= 0.49 would repack for its bfloat16 kernel
    require(not getattr(layer.weight.quant_state, "packing_format_for_cpu", False), "bitsandbytes",
            f"Linear4bit.{flag}", "no longer stops the CPU repacking")  # fmt: skip
    torch.testing.assert_close(y, x @ reference.T + layer.bias, rtol=1e-5, atol=1e-5)
