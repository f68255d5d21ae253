"""Revisions of this history, oldest first (their ids sort in order)."""
