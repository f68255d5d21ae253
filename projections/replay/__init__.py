"""Replay operations on stores: rebuild into a shadow and swap, snapshots, backfills (docs/replay.md)."""
