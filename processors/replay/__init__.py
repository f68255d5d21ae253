"""Replay: rebuild projections from the log, point-in-time snapshots, backfills (docs/replay.md)."""
