"""Deployment helpers and example files for real clusters (see README.md beside this file)."""
