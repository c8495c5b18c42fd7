"""Where the transformer backends run and in which precision.

torch reports bf16 as supported on pre-Ampere GPUs (T4, V100, P100) because it can
emulate it, slowly; ``auto`` precision asks for real hardware support instead, so a T4
gets fp16. ``--precision`` decides the autocast dtype, the dtype a decoder body is loaded
in and the compute dtype of 4-bit weights alike. 8-bit and 4-bit weights (bitsandbytes)
live on the GPU when there is one, else on the CPU, where bitsandbytes 0.50 runs both.

This module imports torch at the top: import it only once the ``transformers`` extra
is known to be present.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from arenajudge.errors import ConfigError, MissingDependencyError

BF16_CAPABILITY = (8, 0)
"""Ampere (sm80) and later compute in bf16 natively."""


def check_device(device: str) -> None:
    """ConfigError when the asked-for device is not present."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible; use --device cpu or auto")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: Apple MPS is not available; use --device cpu or auto")


def quantized_device(device: str) -> torch.device:
    """Where 8-bit and 4-bit weights live: this process's GPU when there is one (and
    ``device`` allows it), else the CPU (or MPS when asked for)."""
    check_device(device)
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("mps" if device == "mps" else "cpu")


def check_quantized(load_in: str, device: str) -> None:
    """ConfigError, before any weights load, when the installed bitsandbytes cannot
    quantize on the device the weights would live on: it is asked to quantize a few
    zeros there, which is the only test that holds across its versions and builds."""
    if load_in == "16bit":
        return
    where = quantized_device(device)
    try:
        import bitsandbytes.functional as bnb

        zeros = torch.zeros(2, 64, device=where)
        if load_in == "4bit":
            bnb.quantize_4bit(zeros, quant_type="nf4")
        else:
            bnb.int8_vectorwise_quant(zeros)
    except ImportError:
        raise MissingDependencyError(
            f"--load-in {load_in} needs bitsandbytes, which is not "
            "installed; install it with `pip install arenajudge[llm]`, or use "
            "--load-in 16bit"
        ) from None
    except Exception as exc:
        from importlib.metadata import version

        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"--load-in {load_in}: the installed bitsandbytes "
            f"{version('bitsandbytes')} cannot quantize on {where.type} "
            f"({reason[:200]}); install a bitsandbytes with a {where.type} "
            "backend (0.50 has CPU and CUDA ones), or use --load-in 16bit"
        ) from None


def inference_device(device: str) -> torch.device:
    """``device``, or for ``auto`` the best one present."""
    check_device(device)
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        # one GPU per process under `accelerate launch` / torchrun
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device != "auto":
        return torch.device(device)
    return torch.device("mps" if torch.backends.mps.is_available() else "cpu")


def has_native_bf16() -> bool:
    """True on a CUDA GPU that computes bf16 in hardware (sm80+), not by emulation."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= BF16_CAPABILITY


def gpu_half_dtype(precision: str) -> torch.dtype | None:
    """The 16-bit dtype for ``precision`` on a CUDA GPU; None for fp32."""
    if precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if has_native_bf16() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None runs fp32."""
    if device.type == "cuda":
        return gpu_half_dtype(precision)
    if precision == "fp16":
        raise ConfigError("--precision fp16 needs a CUDA GPU; use bf16 or fp32")
    # auto: CPU bf16 autocast is slower than fp32 on most CPUs
    return torch.bfloat16 if precision == "bf16" else None


def body_dtype(precision: str, device: str, decoder: bool) -> torch.dtype:
    """Decoder LMs are loaded in 16 bits on a GPU (LoRA trains them in place); encoders
    are fully fine-tuned and keep fp32 master weights under autocast."""
    if not decoder or not torch.cuda.is_available() or device in ("cpu", "mps"):
        return torch.float32
    return gpu_half_dtype(precision) or torch.float32


def quantization(load_in: str, precision: str, device: torch.device) -> Any:
    """The bitsandbytes config of 8-bit or NF4 4-bit weights on ``device``, computing in
    ``precision`` (on a CPU: fp32 unless bf16 is asked for, as for autocast)."""
    from transformers import BitsAndBytesConfig

    if load_in == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if device.type == "cuda":
        compute = gpu_half_dtype(precision) or torch.float32
    else:
        compute = torch.bfloat16 if precision == "bf16" else torch.float32
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )
