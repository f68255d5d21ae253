"""Worked examples of projections added after the fact (docs/replay.md, "A new projection")."""
