"""``alpr-console``: the web console for officers, dispatchers, supervisors, investigators,
auditors and fleet operators.

A separate process that talks to the hubs over gRPC with the signed-in person's own token,
so every permission check and every audit entry stays in the hub, exactly as for the
``alpr`` command line. Pages are rendered on the server (Starlette + Jinja2); the little
JavaScript there is (live queue, sound) and the stylesheet are served from ``static/``.
"""
