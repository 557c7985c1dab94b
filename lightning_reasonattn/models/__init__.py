"""Loading causal LMs: the embedded default model, local checkpoints and hub names; the LoRA adapter.

* [`default_model`][lightning_reasonattn.models.default_model]: the embedded ``SmolLM2-135M-Instruct`` and its cache;
* [`loading`][lightning_reasonattn.models.loading]: ``load_model`` (any model, quantized or not);
* [`lora`][lightning_reasonattn.models.lora]: ``LoraSettings`` and ``add_lora``;
* [`gpt`][lightning_reasonattn.models.gpt]: ``NanoGPT``, a small GPT to train from scratch, with a KV cache;
* [`word_tokenizer`][lightning_reasonattn.models.word_tokenizer]: ``WordTokenizer``, words, punctuation and digits.

Example (the first call converts the default model, about 30 s)::

    from lightning_reasonattn.models import LoraSettings, add_lora, load_model

    model, tokenizer = load_model()                        # embedded SmolLM2-135M-Instruct, fp32
    base, tokenizer = load_model(quantization="nf4")       # 4-bit NF4 through bitsandbytes
    policy = add_lora(base, LoraSettings(r=16, alpha=32))  # trainable adapter, frozen 4-bit base
"""

from .default_model import (
    CACHE_ENV,
    DEFAULT_MODEL,
    GGUF_FILE,
    GGUF_PACKAGE,
    INSTALL_HINT,
    REINSTALL_HINT,
    ModelLoadError,
    cache_root,
    checkpoint_problem,
    default_checkpoint,
    gguf_package_dir,
)
from .gpt import NanoGPT
from .loading import (
    QUANTIZATIONS,
    Quantization,
    compute_dtype,
    exact_cpu_4bit,
    load_model,
    quantization_config,
    resolve_model_path,
)
from .lora import (
    LORA_TARGETS,
    LoraDtype,
    LoraSettings,
    add_lora,
    enable_activation_checkpointing,
    lean_lora_casts,
    lost_update_fraction,
)
from .word_tokenizer import WordTokenizer

__all__ = [
    "CACHE_ENV",
    "DEFAULT_MODEL",
    "GGUF_FILE",
    "GGUF_PACKAGE",
    "INSTALL_HINT",
    "LORA_TARGETS",
    "QUANTIZATIONS",
    "REINSTALL_HINT",
    "LoraDtype",
    "LoraSettings",
    "ModelLoadError",
    "NanoGPT",
    "Quantization",
    "WordTokenizer",
    "add_lora",
    "cache_root",
    "checkpoint_problem",
    "compute_dtype",
    "default_checkpoint",
    "enable_activation_checkpointing",
    "exact_cpu_4bit",
    "gguf_package_dir",
    "lean_lora_casts",
    "load_model",
    "lost_update_fraction",
    "quantization_config",
    "resolve_model_path",
]
