"""The ``alpr`` operator CLI, one module per command group (``hotlist``, ``alerts``)."""
