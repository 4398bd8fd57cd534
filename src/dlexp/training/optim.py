"""Optimizers and the explicit L1 penalty.

Optimizer builders take the parameter groups positionally and their
hyper-parameters as keyword-only arguments (the keys of ``conf/optim/*.yaml``).
``weight_decay`` is not an optim key: it comes from the ``regularizer`` group so
that L2 is set in one place for every optimizer.
"""
from __future__ import annotations

import inspect
from typing import Annotated, Any, List

import torch
from annotated_types import Interval, Len
from omegaconf import DictConfig
from torch import nn

from dlexp.config.constraints import Fraction, NonNegativeFloat, PositiveFloat, Probability
from dlexp.config.registry import Registry, builder_kwargs
from dlexp.errors import ConfigError


OPTIMIZERS = Registry("optimizer", context=("params",))

ParamGroups = List[dict[str, Any]]
Decay = Annotated[float, Interval(ge=0, lt=1)]  # a running average's per-step decay, e.g. Adam's beta1
Betas = Annotated[List[Decay], Len(2, 2)]  # Adam's (beta1, beta2): decays of the gradient's mean and square


@OPTIMIZERS.register("sgd")
def sgd(
    params: ParamGroups, *, lr: PositiveFloat, momentum: Fraction = 0.0, nesterov: bool = False,  # momentum >= 1 diverges
    dampening: Probability = 0.0,
):
    if nesterov and momentum <= 0:
        raise ConfigError("optim.nesterov=true needs optim.momentum > 0 (e.g. optim.momentum=0.9)")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, dampening=dampening)


@OPTIMIZERS.register("adagrad")
def adagrad(params: ParamGroups, *, lr: PositiveFloat = 0.01, eps: NonNegativeFloat = 1e-10):
    return torch.optim.Adagrad(params, lr=lr, eps=eps)


@OPTIMIZERS.register("adadelta")
def adadelta(params: ParamGroups, *, lr: PositiveFloat = 1.0, rho: Probability = 0.9, eps: NonNegativeFloat = 1e-6):
    return torch.optim.Adadelta(params, lr=lr, rho=rho, eps=eps)


@OPTIMIZERS.register("rmsprop")
def rmsprop(
    params: ParamGroups, *, lr: PositiveFloat = 0.01, alpha: NonNegativeFloat = 0.99, eps: NonNegativeFloat = 1e-8,
    momentum: Fraction = 0.0,  # >= 1 would let the velocity grow without bound
):
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, momentum=momentum)


@OPTIMIZERS.register("adam")
def adam(params: ParamGroups, *, lr: PositiveFloat = 1e-3, betas: Betas = (0.9, 0.999), eps: NonNegativeFloat = 1e-8):
    """Adam; weight decay here is the classic L2 term added to the gradient."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps)


@OPTIMIZERS.register("adamw")
def adamw(params: ParamGroups, *, lr: PositiveFloat = 1e-3, betas: Betas = (0.9, 0.999), eps: NonNegativeFloat = 1e-8):
    """AdamW: weight decay decoupled from the adaptive gradient step (Loshchilov & Hutter)."""
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), eps=eps)


def _decays(param: nn.Parameter) -> bool:
    """Weights of linear/conv layers decay; biases and norm scales (1-D) do not."""
    return param.ndim > 1


def build_optimizer(cfg: DictConfig, model: nn.Module, weight_decay: float) -> torch.optim.Optimizer:
    """``cfg`` is the validated ``optim`` group (lr > 0 and the other limits are checked at compose time);
    L2 (regularizer.weight_decay >= 0) goes on weights only (the textbook's choice)."""
    kwargs = builder_kwargs(cfg)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decaying, other = [p for n, p in named if _decays(p)], [p for n, p in named if not _decays(p)]
    if weight_decay == 0:  # one group: the same steps, and each optimizer step makes one call, not two
        groups = [{"params": decaying + other, "weight_decay": 0.0}]
    else:
        groups = [{"params": decaying, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    optimizer = OPTIMIZERS.build(cfg.name, groups, **kwargs)
    return _fused_on_cuda(optimizer) if named and named[0][1].is_cuda else optimizer


# The classes whose fused kernels run on CUDA. Adagrad's fused kernel is CPU-only: on CUDA its step raises
# "fused=True requires ... supported devices" (seen with torch 2.11 on an H200).
FUSED_ON_CUDA = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)


def _fused_on_cuda(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The same optimizer with PyTorch's fused CUDA kernels where its class has them (Adam, AdamW, SGD):
    one kernel for every parameter instead of one per tensor. The rest keep their default (foreach,
    multi-tensor) implementation."""
    if type(optimizer) not in FUSED_ON_CUDA:
        return optimizer
    # defaults can hold keys the class's constructor does not take (AdamW's decoupled_weight_decay,
    # which AdamW fixes to True): pass on only what the constructor accepts.
    accepted = inspect.signature(type(optimizer).__init__).parameters
    defaults = {k: v for k, v in optimizer.defaults.items() if k in accepted} | {"fused": True, "foreach": None}
    # Each param group holds a copy of every default (fused=None among them), and a group's own value
    # wins over the constructor's: drop the implementation keys so every group takes fused=True.
    groups = [{k: v for k, v in g.items() if k not in ("fused", "foreach")} for g in optimizer.param_groups]
    return type(optimizer)(groups, **defaults)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict``, also for a checkpoint whose groups were split where this optimizer's are
    not: without weight decay the weights and the rest share one group, in the same order (weights first),
    and checkpoints written before that have two groups with the same settings."""
    groups = state["param_groups"]
    if len(groups) > 1 and len(optimizer.param_groups) == 1:
        settings = [{k: v for k, v in g.items() if k != "params"} for g in groups]
        if all(s == settings[0] for s in settings):
            merged = {**groups[0], "params": [i for g in groups for i in g["params"]]}
            state = {**state, "param_groups": [merged]}
    optimizer.load_state_dict(state)


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """sum |w| over the decaying weights (biases excluded); a scalar on the model's device."""
    terms = [p.abs().sum() for n, p in model.named_parameters() if p.requires_grad and _decays(p)]
    return torch.stack(terms).sum() if terms else torch.zeros(())
