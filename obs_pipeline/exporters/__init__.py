"""Exporters: one module per type. Each delivers batches out of the process."""
