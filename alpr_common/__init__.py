"""alpr_common package."""
