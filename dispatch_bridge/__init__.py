"""dispatch_bridge package."""
