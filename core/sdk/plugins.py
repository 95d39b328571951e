"""Loading plugins and collecting the connectors they register.

Built-in connectors come through the same entry-point group a third-party package uses, so they cannot rely
on anything a plugin could not. Each engine gets its own `PluginManager`: tests stay isolated and two
campaigns in one process cannot see each other's plugins.

Environment:
    CRM_ACTIVATION_PLUGINS: comma-separated entry-point names to load (all when unset).
    CRM_ACTIVATION_TRACE_HOOKS: when set, every hook call is logged.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from .connector import Connector, ConnectorDeclarationError, validate_connector_class
from .redaction import get_logger

ENTRY_POINT_GROUP = hookspecs.PROJECT
hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)
log = get_logger(__name__)


def make_plugin_manager(extra_plugins: Iterable[object] = (), load_entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh manager with the hookspecs, entry-point plugins (optionally filtered) and `extra_plugins`."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    if load_entry_points:
        wanted = os.environ.get("CRM_ACTIVATION_PLUGINS")
        names = {n.strip() for n in wanted.split(",")} if wanted else None
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            if names is not None and entry_point.name not in names:
                continue
            if manager.get_plugin(entry_point.name) is None:
                plugin: Any = entry_point.load()
                manager.register(plugin, name=entry_point.name)
    for plugin in extra_plugins:
        manager.register(plugin)
    manager.check_pending()
    if os.environ.get("CRM_ACTIVATION_TRACE_HOOKS"):
        manager.trace.root.setwriter(lambda message: log.info("hook: %s", message.rstrip()))
        manager.enable_tracing()
    return manager


def collect_connectors(manager: pluggy.PluginManager) -> dict[str, type[Connector]]:
    """Every registered connector class by platform slug, validated; duplicates are an error."""
    found: dict[str, type[Connector]] = {}
    for classes in manager.hook.register_connectors():
        for cls in classes or ():
            validate_connector_class(cls)
            if cls.platform in found and found[cls.platform] is not cls:
                raise ConnectorDeclarationError(
                    f"platform {cls.platform!r} is registered twice: "
                    f"{found[cls.platform].__module__}.{found[cls.platform].__qualname__} and "
                    f"{cls.__module__}.{cls.__qualname__}"
                )
            found[cls.platform] = cls
    return dict(sorted(found.items()))
