"""``alpr nodes {register,revoke,list}``: edge nodes and their cameras (implemented in users.py)."""

from __future__ import annotations

from alpr_common.operator.users import register_nodes as register
from alpr_common.operator.users import run

__all__ = ["register", "run"]
