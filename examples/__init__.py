"""Runnable examples of pgsaga."""
