"""The engine: graph build, start and stop order, fan-out, the exporter queue and the run loop."""
