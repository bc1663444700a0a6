"""Plate recognition behind small interfaces, so models are swappable (see types.py)."""
