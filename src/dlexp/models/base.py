"""The model registry (a leaf module: the families import it, and the package imports the families).

A model builder takes ``(input_shape, num_classes)`` positionally, where
``input_shape`` is one example's shape, e.g. (C, H, W) or (D,), and
``num_classes`` is the number of outputs (targets, for regression); its
keyword-only parameters are the keys of its YAML in ``conf/model/``. Every
model's YAML also carries the init keys (``init``, ``init_sigma``, ...; see
``dlexp.models.init``), which ``build_model`` applies after the builder.
"""
from __future__ import annotations

from dlexp.models.init import InitConfig
from dlexp.registry import Registry

MODELS = Registry("model", common=InitConfig)  # every model also takes model.init*

