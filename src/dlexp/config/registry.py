"""Strict name -> builder registries.

Every buildable piece (model, dataset, optimizer, scheduler, loss, metric) is
looked up by a plain name from YAML, never by an import path, so a config can
only select code that ships with dlexp.

Builder convention: positional parameters are the *context* the runner passes
(e.g. the input shape, the parameters to optimize); keyword-only parameters are
the *config keys* a YAML may set. The keyword-only signature therefore doubles
as the schema of the config group (see ``dlexp.config.validate``).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterator, Optional

from omegaconf import DictConfig, OmegaConf

from dlexp.config.constraints import did_you_mean
from dlexp.errors import ConfigError

Builder = Callable[..., Any]


def builder_kwargs(node: DictConfig) -> dict[str, Any]:
    """A validated group node as plain keyword arguments for its builder (``name`` dropped)."""
    kwargs = OmegaConf.to_container(node, resolve=True)
    kwargs.pop("name")
    return kwargs


class Registry:
    """A mapping from names to builders that refuses duplicates and typos."""

    def __init__(self, kind: str, common: Optional[type] = None):
        self.kind = kind  # e.g. "model"; used in error messages
        # A dataclass of config keys every entry accepts on top of its builder's
        # own (e.g. model.init); the code that builds the entry applies them.
        self.common = common
        self._builders: dict[str, Builder] = {}

    def register(self, name: str) -> Callable[[Builder], Builder]:
        def decorator(builder: Builder) -> Builder:
            if name in self._builders:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._builders[name] = builder
            return builder

        return decorator

    def get(self, name: str) -> Builder:
        if name not in self._builders:
            raise ConfigError(self.unknown_message(name))
        return self._builders[name]

    def build(self, name: str, *context: Any, **config: Any) -> Any:
        return self.get(name)(*context, **config)

    def names(self) -> list[str]:
        return sorted(self._builders)

    def config_keys(self, name: str) -> dict[str, inspect.Parameter]:
        """The keyword-only parameters of a builder: the keys its YAML may set."""
        signature = inspect.signature(self.get(name))
        return {
            p.name: p for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
        }

    def unknown_message(self, name: str) -> str:
        return f"unknown {self.kind} '{name}'.{did_you_mean(name, self.names())} Choices: {', '.join(self.names())}"

    def __contains__(self, name: object) -> bool:
        return name in self._builders

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._builders)
