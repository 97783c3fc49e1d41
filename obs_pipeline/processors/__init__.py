"""Processors: one module per type. Each transforms, batches or drops data of one pipeline."""
