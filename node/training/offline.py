"""Keep ultralytics / albumentations / Keras from reaching the network (see ml-offline notes).

Call :func:`prepare_offline` before importing ultralytics. It sets ``YOLO_OFFLINE``, points
``YOLO_CONFIG_DIR`` at a project run folder and puts a local font where ultralytics looks for
Arial.ttf (it would otherwise fetch it from GitHub).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_DIR = REPO_ROOT / ".run"
_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
)


def prepare_offline(config_dir: Path | None = None) -> Path:
    """Set the environment so nothing downloads; returns the ultralytics config dir."""
    cfg = Path(os.environ.get("YOLO_CONFIG_DIR") or (config_dir or RUN_DIR / "ultralytics"))
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        (cfg / "Ultralytics").mkdir(parents=True, exist_ok=True)
        font_dst = cfg / "Ultralytics" / "Arial.ttf"
        if not font_dst.exists():
            for src in _FONT_CANDIDATES:
                if Path(src).exists():
                    shutil.copyfile(src, font_dst)
                    break
    except OSError:
        pass  # read-only location: inference does not need the font
    return cfg


def disable_ultralytics_sync() -> None:
    """Turn off ultralytics' settings sync/telemetry (after import)."""
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"sync": False})  # type: ignore[no-untyped-call]
