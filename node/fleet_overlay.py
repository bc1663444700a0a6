"""Fleet configuration overlays: what the hub may set on a node, and how an overlay combines
with the node's own file. Used by the hub (to refuse an invalid overlay with the field and the
reason, with the node's own :class:`~node.config.NodeConfig`) and by the node (to apply it).

An overlay is a JSON object shaped like the node's YAML, with one difference: ``cameras`` is a
mapping from camera id (or ``"*"`` for every camera) to camera settings, since the list in the
file is the unit's own hardware. Local-only settings (the unit's identity, hub addresses,
certificates, device paths, its groups) are refused: they stay in the unit's file.

Overlays combine in order (the node's groups as its file lists them, then the node's own):
objects merge key by key, a later value wins. In a change sent to the hub a ``null`` removes
the key from the scope's overlay.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from alpr_common.config import ConfigError

# Settings that stay on the unit, with the reason given when an overlay tries to set them.
LOCAL_ONLY: dict[str, str] = {
    "node_id": "the unit's identity",
    "kind": "the unit's kind (fixed or mobile)",
    "state_dir": "a local path",
    "location": "the unit's own position",
    "gps": "a device path",
    "hub.targets": "hub addresses",
    "hub.tls_ca_file": "a certificate path",
    "hub.tls_cert_file": "a certificate path",
    "hub.tls_key_file": "a certificate path",
    "queue.path": "a local path",
    "hotlist.path": "a local path",
    "metrics_host": "a local listen address",
    "metrics_port": "a local listen port",
    "fleet": "the unit's own group membership",
    "insecure_dev": "the unit's own security setting",
}
# Camera settings an overlay may set (source and position are the unit's hardware).
CAMERA_KEYS = frozenset({"max_fps"})
# Changes the running node applies in place; any other change restarts the node's parts cleanly.
RUNTIME_PREFIXES = (
    "plate_formats", "tracker", "images", "alerts", "self_check", "hotlist.max_age_s", "hub.window",
    "hub.heartbeat_interval_s", "hub.backoff_initial_s", "hub.backoff_max_s",
)  # fmt: skip
# What an overlay is checked against at the hub: a minimal valid unit.
_PROBE: dict[str, Any] = {
    "node_id": "probe",
    "kind": "FIXED",
    "location": {"latitude": 0.0, "longitude": 0.0},
    "cameras": [{"camera_id": "probe-cam", "source": "probe"}],
}


class OverlayError(ValueError):
    """An overlay that cannot be used: ``problems`` lists ``(field, reason)``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{f}: {r}" for f, r in problems))


def parse_overlay(text: str) -> dict[str, Any]:
    """A JSON object (empty text: ``{}``)."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise OverlayError([("settings_json", f"not valid JSON: {e}")]) from None
    if not isinstance(value, dict):
        raise OverlayError([("settings_json", "must be a JSON object of settings")])
    return value


def dumps(overlay: Mapping[str, Any]) -> str:
    return json.dumps(overlay, sort_keys=True, separators=(",", ":"))


def patch(current: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """``change`` merged into ``current``: objects key by key, ``None`` removes a key, empty objects go."""
    out = copy.deepcopy(dict(current))
    for key, value in change.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            merged = patch(out[key], value)
            if merged:
                out[key] = merged
            else:
                out.pop(key)
        elif isinstance(value, Mapping):
            cleaned = patch({}, value)
            if cleaned:
                out[key] = cleaned
            else:
                out.pop(key, None)
        else:
            out[key] = copy.deepcopy(value)
    return out


def combine(overlays: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Overlays in order (groups, then the node's own): later values win."""
    out: dict[str, Any] = {}
    for o in overlays:
        out = patch(out, o)
    return out


def local_only_problems(overlay: Mapping[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for path, why in LOCAL_ONLY.items():
        head, _, tail = path.partition(".")
        if head in overlay and (not tail or (isinstance(overlay[head], Mapping) and tail in overlay[head])):
            out.append((path, f"local-only ({why}): set it in the unit's own configuration file"))
    cams = overlay.get("cameras")
    if cams is not None:
        if not isinstance(cams, Mapping):
            out.append(("cameras", 'must map a camera id (or "*" for all) to settings, e.g. {"*": {"max_fps": 5}}'))
        else:
            for cam_id, settings in cams.items():
                if not isinstance(settings, Mapping):
                    out.append((f"cameras.{cam_id}", "must be an object of camera settings"))
                    continue
                for k in settings:
                    if k not in CAMERA_KEYS:
                        out.append(
                            (f"cameras.{cam_id}.{k}", f"not settable centrally (only {', '.join(sorted(CAMERA_KEYS))})")
                        )
    return out


def apply_overlay(local: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """The node's settings: its own (file + environment) with the overlay on top. Local-only keys
    of the overlay are ignored (never overwritten), whatever the hub sent."""
    safe = {k: v for k, v in overlay.items() if k not in ("cameras", *[p for p in LOCAL_ONLY if "." not in p])}
    for path in LOCAL_ONLY:
        head, _, tail = path.partition(".")
        if tail and isinstance(safe.get(head), Mapping):
            safe[head] = {k: v for k, v in safe[head].items() if k != tail}
    out = _deep_merge(dict(local), safe)
    cams = overlay.get("cameras")
    if isinstance(cams, Mapping) and isinstance(out.get("cameras"), list):
        new_cams = []
        for cam in out["cameras"]:
            cam = dict(cam) if isinstance(cam, Mapping) else cam
            if isinstance(cam, dict):
                for key in ("*", cam.get("camera_id")):
                    settings = cams.get(key) if isinstance(key, str) else None
                    if isinstance(settings, Mapping):
                        cam.update({k: v for k, v in settings.items() if k in CAMERA_KEYS})
            new_cams.append(cam)
        out["cameras"] = new_cams
    return out


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def validate_overlay(overlay: Mapping[str, Any]) -> None:
    """Raise :class:`OverlayError` (field, reason) unless the overlay is usable on a node:
    no local-only setting, and valid for the node's own configuration model."""
    problems = local_only_problems(overlay)
    if problems:
        raise OverlayError(problems)
    from node.config import NodeConfig

    try:
        NodeConfig.model_validate(apply_overlay(_PROBE, overlay))
    except ValidationError as e:
        raise OverlayError(_problems(e)) from None
    except ConfigError as e:
        raise OverlayError([("(settings)", str(e))]) from None


def _problems(err: ValidationError) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        if loc[:1] == ["cameras"] and len(loc) > 1:
            loc[1] = "*"  # the probe's camera stands for the overlay's camera settings
        where = ".".join(loc) or "(top level)"
        reason = "unknown setting (check the spelling)" if e["type"] == "extra_forbidden" else str(e["msg"])
        out.append((where, reason))
    return out


def changed_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths whose values differ (lists of cameras compared per camera id)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for k in sorted(set(old) | set(new)):
            out += changed_paths(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    if prefix == "cameras." and isinstance(old, list) and isinstance(new, list):
        o = {c.get("camera_id"): c for c in old if isinstance(c, Mapping)}
        n = {c.get("camera_id"): c for c in new if isinstance(c, Mapping)}
        if set(o) != set(n):
            return ["cameras"]
        return [p for cid in sorted(o, key=str) for p in changed_paths(o[cid], n[cid], f"cameras.{cid}.")]
    return [] if old == new else [prefix.rstrip(".")]


def runtime_changeable(path: str) -> bool:
    if path.startswith("cameras.") and path.endswith(".max_fps"):
        return True
    return any(path == p or path.startswith(p + ".") for p in RUNTIME_PREFIXES)
