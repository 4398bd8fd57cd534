"""A user's own components, from their own code: the modules a run names in ``plugins``, imported so that
they register models, datasets, tasks, losses, optimizers and schedulers with dlexp's public decorators
(``from dlexp import register_model``), and are then used by name exactly like the built-in ones.

A name in ``plugins=[...]`` is, in this order:

- a file (``my_models.py``, or a path to one): looked for in the working directory, then in each config
  dir (``--config-dir``) and the folder above it, so a project keeps its plugin beside its configs;
- an entry point of the ``dlexp.plugins`` group, which an installed package declares in its
  ``pyproject.toml`` (``[project.entry-points."dlexp.plugins"] mypkg = "mypkg.components"``);
- a module name (``mypkg.components``).

Nothing is imported that the run does not name. Each plugin is imported once per process; a file
that changed since (a notebook's edit) is imported again, its earlier registrations forgotten first.
A run records each plugin with its package's version or its file's hash (``record``); a resume
imports the same ones and says so when one has changed since the run started.

Light: no torch. The registries' own checks (a name taken, a builder that cannot take its
context) fail the import and become one line naming the plugin.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional, Sequence

from dlexp.errors import ConfigError, UserError

ENTRY_POINT_GROUP = "dlexp.plugins"
FILE_MODULE_PREFIX = "dlexp_plugin_"  # a plugin file's module name: dlexp_plugin_<stem>


@dataclass(frozen=True)
class Plugin:
    name: str  # as the run names it
    module: str  # the imported module's name
    origin: str  # the file, or the installed distribution
    version: str  # "sha256:<12 hex>" of a file, or the distribution's version

    def record(self) -> str:
        return f"{self.origin} ({self.version})"


_loaded: dict[str, Plugin] = {}  # this process's plugins, by the name the run gave


def load(names: Sequence[str], *, search: Sequence[str] = (), forget: Optional[Callable[[str], None]] = None
         ) -> list[Plugin]:
    """Import the plugins ``names`` (``search``: the config dirs); ``forget(module)`` drops the registrations
    of a plugin file imported again because it changed. A plugin that cannot be found or imported, or
    whose registrations are refused, is a ConfigError naming it."""
    return [_load_one(str(name), search, forget) for name in names]


def _load_one(name: str, search: Sequence[str], forget: Optional[Callable[[str], None]]) -> Plugin:
    path = _find_file(name, search)
    if path is not None:
        version = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        earlier = _loaded.get(name)
        if earlier is not None and earlier.version == version and earlier.origin == str(path):
            return earlier
        module = FILE_MODULE_PREFIX + "".join(c if c.isalnum() else "_" for c in path.stem)
        if earlier is not None and forget is not None:
            forget(earlier.module)  # an edited file: its names are registered afresh
        plugin = _loaded[name] = Plugin(name, module, str(path), version)  # known while it imports (its messages)
        try:
            _import(name, module, lambda: _exec_file(module, path))
        except BaseException:
            _loaded.pop(name, None)
            raise
    else:
        plugin = _loaded.get(name) or _load_module(name)
    _loaded[name] = plugin
    return plugin


def _load_module(name: str) -> Plugin:
    """An entry point of the dlexp.plugins group, else a module name."""
    points = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    target = points[name].value.split(":")[0] if name in points else name
    if name not in points and not _importable(target):
        known = ", ".join(sorted(points)) or "none installed"
        raise ConfigError(f"plugin '{name}' not found: no such file (looked in the working directory and the config "
                          f"dirs), no '{ENTRY_POINT_GROUP}' entry point of that name ({known}), and no module "
                          f"'{target}'; give the path of your .py file, e.g. plugins=[./my_models.py]")
    _import(name, target, lambda: importlib.import_module(target))
    dist = points[name].dist if name in points else None
    origin = f"{dist.name}" if dist is not None else target
    version = dist.version if dist is not None else _module_version(target)
    return Plugin(name, target, origin, version)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _module_version(module: str) -> str:
    """The version of the distribution a module comes from, else its file's hash."""
    top = module.split(".")[0]
    for dist, tops in metadata.packages_distributions().items():
        if dist == top or top in tops:
            try:
                return metadata.version(tops[0] if dist == top else dist)
            except metadata.PackageNotFoundError:
                break
    file = getattr(sys.modules.get(module), "__file__", None)
    return "sha256:" + hashlib.sha256(Path(file).read_bytes()).hexdigest()[:12] if file else "unknown"


def _find_file(name: str, search: Sequence[str]) -> Optional[Path]:
    if not name.endswith(".py") and "/" not in name:
        return None
    candidates = [Path(name).expanduser()]
    if not Path(name).is_absolute():
        for folder in search:
            candidates += [Path(folder) / name, Path(folder).parent / name]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        where = ", ".join(dict.fromkeys(str(c.parent.absolute()) for c in candidates))
        raise ConfigError(f"plugin file '{name}' not found (looked in {where}); give its path, relative to the "
                          "working directory or to a config dir")
    return found.absolute()


def _exec_file(module: str, path: Path) -> None:
    spec = importlib.util.spec_from_file_location(module, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module] = loaded  # pickling (parallel launchers) finds the plugin's classes by module name
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        sys.modules.pop(module, None)
        raise


def _import(name: str, module: str, do: Callable[[], object]) -> None:
    """``do()``, with a failure inside the plugin's own code told in one line naming the plugin."""
    try:
        do()
    except UserError as err:  # a registry refused what it registers: a name taken, a builder that cannot be called
        raise type(err)(f"plugin '{name}': {err}") from None
    except Exception as err:  # noqa: BLE001  (the plugin's own code failed as it was imported)
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        where = _where(err, module)
        raise ConfigError(f"plugin '{name}' failed as it was imported ({type(err).__name__}{': ' + first if first else ''})"
                          f"{where}; fix the plugin (DLEXP_TRACEBACK=1 shows the traceback)") from err


def _where(err: BaseException, module: str) -> str:
    """`` at my_models.py:12``: the last line of the plugin's own code in the traceback."""
    tb, found = err.__traceback__, ""
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__") == module:
            found = f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


def record(plugins: Sequence[Plugin]) -> dict[str, str]:
    """What a run records of its plugins: name -> origin and version (or hash)."""
    return {p.name: p.record() for p in plugins}


def changed_since(recorded: dict[str, str], plugins: Sequence[Plugin]) -> list[str]:
    """The plugins whose origin or version differs from what a run recorded (a resume says so)."""
    now = record(plugins)
    return [f"{name}: {was} -> {now[name]}" for name, was in recorded.items() if name in now and now[name] != was]


def recorded_dirs(recorded: dict[str, str]) -> list[str]:
    """The folders of the plugin files a run recorded: a resume started elsewhere finds them there."""
    origins = (text.rsplit(" (", 1)[0] for text in recorded.values())
    return [str(Path(origin).parent) for origin in origins if origin.endswith(".py")]


def plugin_frame(err: BaseException) -> Optional[str]:
    """``components.py:12`` when the innermost frame of ``err``'s traceback that is a plugin's own code is in a
    plugin this process imported (the error is in the user's code, not dlexp's); else None."""
    modules = {p.module: p for p in _loaded.values()}
    tb, found = err.__traceback__, None
    while tb is not None:
        plugin = modules.get(tb.tb_frame.f_globals.get("__name__", ""))
        if plugin is not None:
            found = f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


def describe_module(module: str) -> str:
    """A registering module as its user knows it: a plugin's file, else the module's name."""
    plugin = next((p for p in _loaded.values() if p.module == module), None)
    return f"plugin {plugin.name}" if plugin is not None else module
