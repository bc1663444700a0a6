"""Strict configuration loading shared by every component.

A component describes its configuration as a pydantic model whose sections forbid
unknown keys (a typo is an error, not a silently ignored setting). Values come from, in
order of precedence: environment variables, the YAML file, the model's defaults.

Environment overrides use a per-component prefix and ``__`` between nesting levels, e.g.
``ALPR_HUB__CASSANDRA__CONTACT_POINTS=10.0.0.1,10.0.0.2`` or ``ALPR_HUB__GRPC_PORT=50052``.
Values are parsed as YAML scalars/flow collections, so ``true``, ``3`` and ``[a, b]`` work;
comma-separated text is accepted for list fields.

Secure by default: the hub, the bridge and the node refuse to start without TLS (and the
hub without access control) unless their config says ``insecure_dev: true``, and then say
so loudly (:func:`refuse_insecure`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are rejected, values validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class ConfigError(Exception):
    """The configuration is unreadable or invalid; the message says what to fix."""


class InsecureConfigError(ConfigError, ValueError):
    """The config would run without TLS or access control and does not say ``insecure_dev: true``."""


def refuse_insecure(
    component: str, problems: list[str], insecure_dev: bool, off: list[str], exposure: str, log: logging.Logger
) -> None:
    """Raise :class:`InsecureConfigError` listing ``problems``; with none, and ``insecure_dev``,
    log a warning no one can miss: what is ``off`` and what that exposes."""
    if problems:
        raise InsecureConfigError(f"the {component} will not start: " + "; ".join(problems))
    if insecure_dev:
        log.warning(
            "\n%s\nINSECURE DEVELOPMENT %s (insecure_dev: true): %s OFF. %s Never run this with real reads.\n%s",
            "!" * 78, component.upper(), ", ".join(off) or "nothing", exposure, "!" * 78,
        )  # fmt: skip


def _set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        nxt = target.setdefault(key, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"environment override {'.'.join(path)}: {key} is not a section")
        target = nxt
    target[path[-1]] = value


def _parse_env_value(raw: str, field_is_list: bool) -> Any:
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    if field_is_list and isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    return value


def _field_is_list(model: type[BaseModel], path: list[str]) -> bool:
    current: Any = model
    for key in path:
        fields = getattr(current, "model_fields", None)
        if not fields or key not in fields:
            return False
        current = fields[key].annotation
    origin = getattr(current, "__origin__", None)
    return origin in (list, tuple) or current in (list, tuple)


def env_overrides(model: type[BaseModel], prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Collect ``PREFIX__A__B=value`` variables into a nested dict."""
    out: dict[str, Any] = {}
    marker = prefix + "__"
    for name, raw in environ.items():
        if not name.startswith(marker):
            continue
        path = [p.lower() for p in name[len(marker) :].split("__") if p]
        if not path:
            continue
        _set_path(out, path, _parse_env_value(raw, _field_is_list(model, path)))
    return out


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_validation_error(source: str, err: ValidationError) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key (check the spelling; see the example config)")
        else:
            lines.append(f"  {where}: {e['msg']}")
    return "\n".join(lines)


def load_config(
    model: type[T],
    path: str | Path | None,
    env_prefix: str,
    environ: Mapping[str, str] | None = None,
) -> T:
    """Load ``model`` from a YAML file (optional) plus environment overrides."""
    data, source = load_config_data(model, path, env_prefix, environ)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(source, e)) from e


def load_config_data(
    model: type[BaseModel],
    path: str | Path | None,
    env_prefix: str,
    environ: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], str]:
    """The settings of a YAML file (optional) plus environment overrides, not yet validated,
    and where they came from (for messages)."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {p}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of settings at the top level")
        data = loaded
    overrides = env_overrides(model, env_prefix, os.environ if environ is None else environ)
    if overrides:
        source += f" + {env_prefix}__* environment"
        data = _merge(data, overrides)
    return data, source


def validate_config(model: type[T], data: Mapping[str, Any], source: str) -> T:
    """``model`` from settings, a ConfigError listing each bad field otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(source, e)) from e
