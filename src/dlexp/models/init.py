"""Weight initialization as config: ``model.init=<name>`` for every model.

The init keys are common to all models (``InitConfig``): the model group's
schema merges them into each builder's own keys, and ``build_model`` applies the
choice once, after the builder, so no model implements it.

Weights are the parameters named ``weight`` with two or more dimensions (linear
and conv kernels); they get the chosen init and their layer's bias is zeroed.
Norm layers (1-D scales and shifts) keep their identity init. ``default`` leaves
PyTorch's own init untouched, biases included.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from dlexp.errors import ConfigError
from dlexp.registry import Registry

INITS = Registry("init")


@dataclass
class InitConfig:
    """Keys every model's YAML carries, next to its builder's own."""

    init: str = "default"  # an INITS name
    init_sigma: float = 0.01  # standard deviation for init=normal (the textbook's 0.01)
    init_range: float = 0.07  # init=uniform draws from U(-init_range, init_range)
    init_value: float = 0.01  # init=constant sets every weight to this value


InitFn = Callable[[Tensor, InitConfig], Any]


def _register(name: str, fn: InitFn) -> None:
    INITS.register(name)(fn)


_register("default", lambda w, c: None)  # keep PyTorch's per-layer init
_register("normal", lambda w, c: nn.init.normal_(w, mean=0.0, std=c.init_sigma))
_register("uniform", lambda w, c: nn.init.uniform_(w, -c.init_range, c.init_range))
_register("xavier_uniform", lambda w, c: nn.init.xavier_uniform_(w))
_register("xavier_normal", lambda w, c: nn.init.xavier_normal_(w))
# He init for ReLU nets: variance 2 / fan_in keeps activations' scale through depth
_register("kaiming_uniform", lambda w, c: nn.init.kaiming_uniform_(w, nonlinearity="relu"))
_register("kaiming_normal", lambda w, c: nn.init.kaiming_normal_(w, nonlinearity="relu"))
_register("orthogonal", lambda w, c: nn.init.orthogonal_(w))  # conv kernels as (out, in*kh*kw)
_register("constant", lambda w, c: nn.init.constant_(w, c.init_value))
_register("zeros", lambda w, c: nn.init.zeros_(w))

# which parameter each init reads, for the run summary
_PARAM_OF = {"normal": "init_sigma", "uniform": "init_range", "constant": "init_value"}


def check_init(cfg: InitConfig) -> None:
    if cfg.init not in INITS:
        raise ConfigError(f"model.init: {INITS.unknown_message(cfg.init)}")
    if cfg.init == "normal" and not cfg.init_sigma > 0:
        raise ConfigError(f"model.init_sigma must be > 0 for init=normal, got {cfg.init_sigma}")
    if cfg.init == "uniform" and not cfg.init_range > 0:
        raise ConfigError(f"model.init_range must be > 0 for init=uniform, got {cfg.init_range}")


@torch.no_grad()
def apply_init(model: nn.Module, cfg: InitConfig) -> nn.Module:
    """Initialize every linear/conv weight of ``model`` in place and zero its bias."""
    check_init(cfg)
    if cfg.init == "default":
        return model
    fn = INITS.get(cfg.init)
    for module in model.modules():
        if isinstance(module, nn.RNNBase):  # recurrent layers name theirs weight_ih_l0, weight_hh_l0, bias_ih_l0, ...
            for name, param in module.named_parameters(recurse=False):
                if name.startswith("weight"):
                    fn(param, cfg)
                else:
                    nn.init.zeros_(param)
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter) or weight.dim() < 2:
            continue  # no kernel here, or a norm layer's per-channel scale
        fn(weight, cfg)
        bias = getattr(module, "bias", None)
        if isinstance(bias, nn.Parameter):
            nn.init.zeros_(bias)
    return model


def init_summary(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``{"init": "normal", "init_sigma": 0.01}``: a model config's init and the one value it uses."""
    cfg, _ = split_init(dict(model_cfg))
    out: dict[str, Any] = {"init": cfg.init}
    if cfg.init in _PARAM_OF:
        out[_PARAM_OF[cfg.init]] = asdict(cfg)[_PARAM_OF[cfg.init]]
    return out


def split_init(kwargs: dict[str, Any]) -> tuple[InitConfig, dict[str, Any]]:
    """Separate the common init keys from a model's builder keys."""
    common = {k: kwargs[k] for k in InitConfig.__dataclass_fields__ if k in kwargs}
    rest = {k: v for k, v in kwargs.items() if k not in common}
    return InitConfig(**common), rest
