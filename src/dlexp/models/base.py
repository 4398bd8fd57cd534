"""The model registry (a leaf module: the families import it, and the package imports the families).

A model builder takes ``(input_shape, num_classes)`` positionally, where
``input_shape`` is one example's shape, e.g. (C, H, W) or (D,), and
``num_classes`` is the number of outputs (targets, for regression); its
keyword-only parameters are the keys of its YAML in ``conf/model/``. Every
model's YAML also carries the init keys (``init``, ``init_sigma``, ...; see
``dlexp.models.init``), which ``build_model`` applies after the builder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

from dlexp.models.init import InitConfig
from dlexp.config.registry import Registry

MODELS = Registry("model", common=InitConfig, context=("input_shape", "num_classes"))  # every model also takes model.init*


@dataclass(frozen=True)
class InputSize:
    """The square image sides (pixels) a conv net family is built for; flat models have none."""

    minimum: int  # the smallest side its convs and pools accept at the YAML's architecture
    textbook: int  # the side the textbook trains it at
    # for families whose depth is configurable: builder kwargs -> the smallest side of that architecture
    minimum_of: Optional[Callable[[dict[str, Any]], int]] = None
    # the side dataset.resize=auto brings smaller images up to, for nets that accept smaller inputs than they
    # learn from; None = the minimum
    learns_from: Optional[int] = None


class Sides(NamedTuple):
    """The sides (pixels) of one model as configured."""

    minimum: int  # the smallest it accepts
    textbook: int  # the one the textbook trains it at
    auto: int  # the one dataset.resize=auto brings smaller images up to: the minimum, or more where it learns only then


INPUT_SIZES: dict[str, InputSize] = {}  # model name -> its sizes; each family module fills in its own


def input_size(name: str, kwargs: dict[str, Any]) -> Optional[Sides]:
    """The sides of model ``name`` built with ``kwargs``; None for flat models."""
    sizes = INPUT_SIZES.get(name)
    if sizes is None:
        return None
    minimum = sizes.minimum_of(kwargs) if sizes.minimum_of is not None else sizes.minimum
    return Sides(minimum, sizes.textbook, max(minimum, sizes.learns_from or minimum))

