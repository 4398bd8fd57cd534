"""Where and how the run executes: device choice, CPU threads, seeding.

Everything device-specific is decided here once and carried in a ``Runtime``,
so the training loop never branches on the hardware. Mixed precision,
channels_last, torch.compile and multi-process ranks belong on this object.
"""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import torch
from omegaconf import DictConfig
from torch.nn.parallel import DistributedDataParallel

from dlexp.data.base import Batch
from dlexp.errors import ConfigError


PRECISIONS = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class Runtime:
    """Where and how the model runs: device, precision, compile, memory format and process ranks."""

    device: torch.device
    rank: int = 0  # process rank; only rank 0 writes files
    world_size: int = 1
    precision: str = "32"
    compile: Union[bool, str] = False  # False, True or a torch.compile mode name
    channels_last: Union[bool, str] = False  # "auto": decided in prepare_model (conv nets on CUDA)
    sync_batchnorm: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        if self.device.type == "cuda":
            where = f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        elif self.device.type == "mps":
            where = "mps (Apple's GPU)"
        else:
            where = f"cpu ({torch.get_num_threads()} threads)"
        extras = [f"precision {self.precision}"] if self.precision != "32" else []
        extras += ["compiled"] if self.compile else []
        extras += ["channels_last"] if self.channels_last else []
        extras += [f"{self.world_size} processes"] if self.distributed else []
        return where + (f", {', '.join(extras)}" if extras else "")

    def prepare_model(self, model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(the model to call, the raw model to save and inspect).

        Wrappers (DDP, ``torch.compile``) go on the first only, so checkpoint keys and
        layer names never carry their prefixes (``module.``, ``_orig_mod.``).
        """
        if self.sync_batchnorm and self.distributed:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = model.to(self.device)
        if self.channels_last == "auto":
            is_conv_net = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
            self.channels_last = self.device.type == "cuda" and is_conv_net
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        raw, wrapped = model, model
        if self.distributed:
            wrapped = DistributedDataParallel(wrapped, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.compile:
            mode = None if self.compile is True else self.compile
            wrapped = torch.compile(wrapped, mode=mode)
        return wrapped, raw

    def prepare_batch(self, batch: Batch) -> Batch:
        """A batch as the model should see it: 4-D inputs in channels_last when the model is."""
        if self.channels_last and batch.inputs.dim() == 4:
            batch.inputs = batch.inputs.contiguous(memory_format=torch.channels_last)
        return batch

    def autocast(self) -> Any:
        """The forward pass's precision context; at 32 none at all (a disabled torch.autocast still costs
        microseconds to enter, every step)."""
        dtype = PRECISIONS[self.precision]
        return torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def grad_scaler(self) -> Optional[torch.amp.GradScaler]:
        """float16 needs loss scaling (its range is small); bf16 and fp32 do not."""
        return torch.amp.GradScaler(self.device.type) if self.precision == "16" else None

    @property
    def check_every(self) -> int:
        """Steps between divergence checks. Each check is a host sync: free on the CPU, not on a GPU."""
        return 1 if self.device.type == "cpu" else 50  # CUDA and MPS alike


def mps_available() -> bool:
    """Apple's GPU (MPS): a Mac with Apple silicon and a PyTorch built with it."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(requested: str, local_rank: Optional[int] = None) -> torch.device:
    """``auto`` -> CUDA when available, else Apple's GPU (MPS), else the CPU. Asking for a GPU this machine
    lacks is an error. Under torchrun (``local_rank`` given) each process takes the GPU of its local rank."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "mps" if mps_available() and local_rank is None else "cpu"
    if local_rank is not None and requested == "cuda":
        requested = f"cuda:{local_rank}"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ConfigError(f"trainer.device='{requested}' is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.device={requested} but CUDA is not available on this machine; use trainer.device=auto or cpu"
        )
    if device.type == "mps" and not mps_available():
        raise ConfigError(f"trainer.device={requested} but Apple's GPU (MPS) is not available here (it needs a Mac with "
                          "Apple silicon and a PyTorch built with MPS); use trainer.device=auto or cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"trainer.device='{requested}' is not supported; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"trainer.device={requested}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def _check_mps(trainer_cfg: DictConfig, world_size: int) -> None:
    """What dlexp does not run on Apple's GPU: one line each, before anything is built. (MPS has not run on
    real hardware in dlexp's tests: these settings are refused rather than left to fail mid-run.)"""
    if world_size > 1:
        raise ConfigError("torchrun on mps: no distributed backend runs on Apple's GPU; under torchrun use "
                          "trainer.device=cpu, or train on one process")
    if str(trainer_cfg.precision) != "32":
        raise ConfigError(f"trainer.precision={trainer_cfg.precision} on mps: mixed precision (autocast, the gradient "
                          "scaler) is not supported on Apple's GPU by dlexp; use trainer.precision=32")
    if trainer_cfg.compile not in (False, "false"):
        raise ConfigError(f"trainer.compile={trainer_cfg.compile} on mps: torch.compile (and the CUDA graphs of "
                          "reduce-overhead) does not support Apple's GPU; use trainer.compile=false")


def setup_runtime(trainer_cfg: DictConfig, ranks: tuple[int, int, int] = (0, 1, 0)) -> Runtime:
    """The Runtime for ``trainer.*``; ``ranks`` is (rank, world size, local rank) under torchrun."""
    if trainer_cfg.num_threads is not None:
        if trainer_cfg.num_threads < 1:
            raise ConfigError(f"trainer.num_threads must be >= 1, got {trainer_cfg.num_threads}")
        torch.set_num_threads(trainer_cfg.num_threads)
    rank, world_size, local_rank = ranks
    device = resolve_device(trainer_cfg.device, local_rank if world_size > 1 else None)
    if device.type == "mps":
        _check_mps(trainer_cfg, world_size)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
    return Runtime(
        device=device, rank=rank, world_size=world_size,
        precision=_precision(trainer_cfg.precision, device),
        compile=_compile_mode(trainer_cfg.compile),
        channels_last=_channels_last(trainer_cfg.channels_last),
        sync_batchnorm=_sync_batchnorm(trainer_cfg.sync_batchnorm, device),
    )


def _precision(value: Any, device: torch.device) -> str:
    text = str(value)  # one of PRECISIONS: the schema checked it
    if text == "16" and device.type == "cpu":
        raise ConfigError("trainer.precision=16 (float16) needs a GPU; on the CPU use trainer.precision=bf16")
    return text


def _compile_mode(value: Any) -> Union[bool, str]:
    if isinstance(value, bool):
        return value
    if value in COMPILE_MODES:
        return "default" if value == "default" else value
    raise ConfigError(f"trainer.compile must be true, false or a mode ({', '.join(COMPILE_MODES)}), got '{value}'")


def _channels_last(value: Any) -> Union[bool, str]:
    if value == "auto" or isinstance(value, bool):
        return value
    raise ConfigError(f"trainer.channels_last must be auto, true or false, got '{value}'")


def _sync_batchnorm(value: bool, device: torch.device) -> bool:
    if value and device.type != "cuda":
        raise ConfigError("trainer.sync_batchnorm=true needs CUDA (SyncBatchNorm does not run on CPU tensors); set it to false")
    return value


def seed_everything(seed: int) -> None:
    """Seed every RNG a run touches, so the same seed gives the same numbers on the CPU."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def capture_rng() -> dict[str, Any]:
    """Every RNG stream a run draws from, as plain containers and tensors (weights_only-loadable)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if mps_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():  # a checkpoint moves between devices: each restores its own
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and mps_available():
        torch.mps.set_rng_state(state["mps"])
