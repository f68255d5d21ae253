"""The HTTP read API: ``create_app`` (app.py), tokens and audit (auth.py), the authorisation
matrix (policy.py), Prometheus metrics (metrics.py)."""
