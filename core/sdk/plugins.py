"""Loading plugins and collecting the connectors they register.

Built-in connectors come through the same entry-point group a third-party package uses, so they cannot rely
on anything a plugin could not. Each engine gets its own `PluginManager`: tests stay isolated and two
campaigns in one process cannot see each other's plugins.

One broken installed plugin (its module fails to import, or its `register_connectors` hook raises or returns a
class the SDK refuses) must not take every command down with it: it is logged as a warning, kept in
`plugin_problems(manager)` (shown by `crm-activation connectors`) and skipped. A campaign that names a platform
only that plugin could have provided gets an error naming the distribution (`missing_connector_error`).

Environment:
    CRM_ACTIVATION_PLUGINS: comma-separated entry-point names to load (all when unset).
    CRM_ACTIVATION_TRACE_HOOKS: when set, every hook call is logged.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, cast

import pluggy

from . import hookspecs
from .connector import Connector, ConnectorDeclarationError, validate_connector_class
from .errors import ConfigError
from .redaction import get_logger

ENTRY_POINT_GROUP = hookspecs.PROJECT
hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)
log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PluginProblem:
    """An installed plugin that was skipped: which entry point, from which distribution, and why."""

    entry_point: str
    distribution: str
    stage: str  # "import" (the entry point did not load) or "register_connectors" (the hook failed)
    error: str

    def __str__(self) -> str:
        return (
            f"plugin {self.entry_point!r} from distribution {self.distribution!r} skipped "
            f"({'failed to import' if self.stage == 'import' else 'its register_connectors hook failed'}): "
            f"{self.error}"
        )

    def to_json(self) -> dict[str, str]:
        """For `connectors --json`."""
        return {"entry_point": self.entry_point, "distribution": self.distribution, "stage": self.stage,
                "error": self.error}


class _Manager(pluggy.PluginManager):
    """A plugin manager that remembers which plugins came from entry points and which of them were skipped."""

    def __init__(self, project_name: str) -> None:
        super().__init__(project_name)
        self.entry_point_plugins: dict[str, str] = {}  # plugin name -> distribution
        self.problems: list[PluginProblem] = []

    def note(self, problem: PluginProblem) -> None:
        """Record and warn once per plugin and stage (the connectors are collected several times per run)."""
        if problem not in self.problems:
            self.problems.append(problem)
            log.warning("%s", problem)


def _distribution(entry_point: EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    return str(dist.name) if dist is not None and dist.name else "unknown distribution"


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def plugin_problems(manager: pluggy.PluginManager) -> list[PluginProblem]:
    """The installed plugins skipped so far by this manager (empty for a manager made elsewhere)."""
    return list(getattr(manager, "problems", ()))


def missing_connector_error(manager: pluggy.PluginManager, slug: str, installed: Iterable[str]) -> ConfigError:
    """The error for a campaign platform no loaded plugin provides, naming a broken plugin that may be the cause.

    A skipped plugin whose entry-point name is the platform's slug is named alone; otherwise every skipped plugin
    is listed as a possible cause, since which platform a plugin would have registered is unknown once it failed.
    """
    problems = plugin_problems(manager)
    names = ", ".join(installed) or "none"
    message = f"platforms.{slug}: no connector named {slug!r} is installed (installed: {names})"
    likely = [p for p in problems if p.entry_point == slug] or problems
    if likely:
        causes = "; ".join(str(p) for p in likely)
        message += f"; the plugin that provides it may be the broken one: {causes}"
    return ConfigError(message)


def make_plugin_manager(extra_plugins: Iterable[object] = (), load_entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh manager with the hookspecs, entry-point plugins (optionally filtered) and `extra_plugins`."""
    manager = _Manager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    if load_entry_points:
        wanted = os.environ.get("CRM_ACTIVATION_PLUGINS")
        names = {n.strip() for n in wanted.split(",")} if wanted else None
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            if names is not None and entry_point.name not in names:
                continue
            if manager.get_plugin(entry_point.name) is None:
                distribution = _distribution(entry_point)
                try:  # any error a module's import can raise, including a SyntaxError or a bad hookimpl
                    plugin: Any = entry_point.load()
                    manager.register(plugin, name=entry_point.name)
                except Exception as error:
                    manager.note(PluginProblem(entry_point.name, distribution, "import", _error_text(error)))
                    continue
                manager.entry_point_plugins[entry_point.name] = distribution
    for plugin in extra_plugins:
        manager.register(plugin)
    manager.check_pending()
    if os.environ.get("CRM_ACTIVATION_TRACE_HOOKS"):
        manager.trace.root.setwriter(lambda message: log.info("hook: %s", message.rstrip()))
        manager.enable_tracing()
    return manager


def collect_connectors(manager: pluggy.PluginManager) -> dict[str, type[Connector]]:
    """Every registered connector class by platform slug, validated; duplicates are an error.

    An installed (entry-point) plugin whose hook raises, or returns a class that fails validation, is skipped
    with a warning (see the module docstring); a plugin registered directly by the caller still raises, since
    that caller is a test or a program that wants to know.
    """
    found: dict[str, type[Connector]] = {}
    installed = getattr(manager, "entry_point_plugins", {})
    for impl in reversed(manager.hook.register_connectors.get_hookimpls()):  # pluggy's own call order
        try:
            classes = list(cast(Iterable[type[Connector]] | None, impl.function()) or ())  # once
            for cls in classes:
                validate_connector_class(cls)
        except Exception as error:
            if impl.plugin_name not in installed or not isinstance(manager, _Manager):
                raise
            problem = PluginProblem(impl.plugin_name, installed[impl.plugin_name], "register_connectors",
                                    _error_text(error))
            manager.note(problem)
            continue
        for cls in classes:
            if cls.platform in found and found[cls.platform] is not cls:
                raise ConnectorDeclarationError(
                    f"platform {cls.platform!r} is registered twice: "
                    f"{found[cls.platform].__module__}.{found[cls.platform].__qualname__} and "
                    f"{cls.__module__}.{cls.__qualname__}"
                )
            found[cls.platform] = cls
    return dict(sorted(found.items()))
