"""Thin Ray wrappers: Ray Data stage functions and the actor classes that host engines."""
