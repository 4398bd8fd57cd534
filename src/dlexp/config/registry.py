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
from dlexp.config.plugins import describe_module
from dlexp.errors import ConfigError

Builder = Callable[..., Any]


def builder_kwargs(node: DictConfig) -> dict[str, Any]:
    """A validated group node as plain keyword arguments for its builder (``name`` dropped)."""
    kwargs = OmegaConf.to_container(node, resolve=True)
    kwargs.pop("name")
    return kwargs


class NameTaken(ConfigError):
    """A second builder registered under a name a registry already has (a user's plugin and a built-in one)."""


class BadBuilder(ConfigError):
    """A builder whose signature cannot take what the runner passes it."""


class Registry:
    """A mapping from names to builders that refuses duplicates, typos and builders that cannot be called.

    ``context``: the positional parameters the runner passes every builder of this kind (a model builder
    gets ``(input_shape, num_classes)``); a builder registered without room for them is refused at once.
    ``kind_of``: for registries of classes (tasks), the class every entry must subclass."""

    def __init__(self, kind: str, common: Optional[type] = None, context: tuple[str, ...] = (),
                 kind_of: Optional[type] = None):
        self.kind = kind  # e.g. "model"; used in error messages
        # A dataclass of config keys every entry accepts on top of its builder's
        # own (e.g. model.init); the code that builds the entry applies them.
        self.common = common
        self.context = context
        self.kind_of = kind_of
        self._builders: dict[str, Builder] = {}

    def register(self, name: str) -> Callable[[Builder], Builder]:
        def decorator(builder: Builder) -> Builder:
            if name in self._builders:
                taken = describe_module(self._builders[name].__module__)
                raise NameTaken(f"{self.kind} '{name}' is already registered (by {taken}); register yours under "
                                "another name")
            self._check_signature(name, builder)
            self._builders[name] = builder
            return builder

        return decorator

    def _check_signature(self, name: str, builder: Builder) -> None:
        if self.kind_of is not None:
            if not (isinstance(builder, type) and issubclass(builder, self.kind_of)):
                raise BadBuilder(f"{self.kind} '{name}' must be a subclass of {self.kind_of.__name__}")
            return
        if not self.context:  # nothing passed positionally: any builder will do (findings register records)
            return
        params = list(inspect.signature(builder).parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) < len(self.context) and not any(p.kind is p.VAR_POSITIONAL for p in params):
            keys = ", ".join(p.name for p in params if p.kind is p.KEYWORD_ONLY)
            wanted = ", ".join([*self.context, "*", keys or "<its config keys>"])
            raise BadBuilder(f"{self.kind} '{name}' (the function {builder.__name__} of {describe_module(builder.__module__)}) "
                             f"must take ({wanted}); it takes ({', '.join(p.name for p in params)})")

    def unregister_module(self, module: str) -> None:
        """Forget every builder that ``module`` registered (a plugin imported again after it changed)."""
        self._builders = {n: b for n, b in self._builders.items() if getattr(b, "__module__", None) != module}

    def origin(self, name: str) -> str:
        """The module that registered ``name`` (``dlexp.models.mlp``, or a user's plugin)."""
        return str(getattr(self.get(name), "__module__", "?"))

    def takes(self, name: str, key: str) -> bool:
        """Whether the builder of ``name`` accepts ``key`` as a keyword (by name, or through ``**kwargs``)."""
        params = inspect.signature(self.get(name)).parameters
        return key in params or any(p.kind is p.VAR_KEYWORD for p in params.values())

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
