"""The read API's routers, one module per resource; ``projections/api/app.py`` assembles them.

Routers are included without a prefix: the policy matrix (policy.py) is keyed by full paths.
"""
