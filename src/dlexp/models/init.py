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
from typing import Any, Callable, Literal, Mapping

import torch
from torch import Tensor, nn

from dlexp.config.constraints import PositiveFloat
from dlexp.config.registry import Registry

INITS = Registry("init")

InitFn = Callable[[Tensor, "InitConfig"], Any]

_INIT_FNS: dict[str, InitFn] = {
    "default": lambda w, c: None,  # keep PyTorch's per-layer init
    "normal": lambda w, c: nn.init.normal_(w, mean=0.0, std=c.init_sigma),
    "uniform": lambda w, c: nn.init.uniform_(w, -c.init_range, c.init_range),
    "xavier_uniform": lambda w, c: nn.init.xavier_uniform_(w),
    "xavier_normal": lambda w, c: nn.init.xavier_normal_(w),
    # He init for ReLU nets: variance 2 / fan_in keeps activations' scale through depth
    "kaiming_uniform": lambda w, c: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "kaiming_normal": lambda w, c: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "orthogonal": lambda w, c: nn.init.orthogonal_(w),  # conv kernels as (out, in*kh*kw)
    "constant": lambda w, c: nn.init.constant_(w, c.init_value),
    "zeros": lambda w, c: nn.init.zeros_(w),
}
for _name, _fn in _INIT_FNS.items():
    INITS.register(_name)(_fn)
InitName = Literal[tuple(_INIT_FNS)]  # type: ignore[valid-type]


@dataclass
class InitConfig:
    """Keys every model's YAML carries, next to its builder's own."""

    init: InitName = "default"
    init_sigma: PositiveFloat = 0.01  # standard deviation for init=normal (the textbook's 0.01)
    init_range: PositiveFloat = 0.07  # init=uniform draws from U(-init_range, init_range)
    init_value: float = 0.01  # init=constant sets every weight to this value


# which parameter each init reads, for the run summary
_PARAM_OF = {"normal": "init_sigma", "uniform": "init_range", "constant": "init_value"}


@torch.no_grad()
def apply_init(model: nn.Module, cfg: InitConfig) -> nn.Module:
    """Initialize every linear/conv weight of ``model`` in place and zero its bias (``cfg`` validated)."""
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
