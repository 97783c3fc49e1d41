"""Receivers: one module (or subpackage) per type. Each takes data from outside the process."""
