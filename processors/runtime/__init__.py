"""The projection runtime: one apply path for every projection and every reader of the log (live worker,
replay, backfill) - decoding, positions, de-duplication, loading, the fold, the commit (apply.py)."""
