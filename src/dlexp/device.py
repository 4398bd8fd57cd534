"""Where and how the run executes: device choice, CPU threads, seeding.

Everything device-specific is decided here once and carried in a ``Runtime``,
so the training loop never branches on the hardware. Mixed precision,
channels_last, torch.compile and multi-process ranks belong on this object.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dlexp.errors import ConfigError


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0  # process rank; only rank 0 writes files
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        if self.device.type == "cuda":
            return f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        return f"cpu ({torch.get_num_threads()} threads)"

    def prepare_model(self, model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(the model to call, the raw model to save and inspect).

        Wrappers (``torch.compile``, DDP) go on the first only, so checkpoint keys and
        layer names never carry their prefixes (``_orig_mod.``, ``module.``).
        """
        model = model.to(self.device)
        return model, model

    def prepare_batch(self, batch: Any) -> Any:
        """A batch as the model should see it (precision or memory format, later); the loaders
        already deliver it on the device."""
        return batch

    @property
    def check_every(self) -> int:
        """Steps between divergence checks. Each check is a host sync: free on the CPU, not on a GPU."""
        return 1 if self.device.type == "cpu" else 50


def resolve_device(requested: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu. Asking for CUDA without it is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ConfigError(f"trainer.device='{requested}' is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.device={requested} but CUDA is not available on this machine; use trainer.device=auto or cpu"
        )
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"trainer.device='{requested}' is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"trainer.device={requested}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def setup_runtime(trainer_cfg) -> Runtime:
    if trainer_cfg.num_threads is not None:
        if trainer_cfg.num_threads < 1:
            raise ConfigError(f"trainer.num_threads must be >= 1, got {trainer_cfg.num_threads}")
        torch.set_num_threads(trainer_cfg.num_threads)
    return Runtime(device=resolve_device(trainer_cfg.device))


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
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
