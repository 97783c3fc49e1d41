"""Durable storage for exporter queues: the disk queue (:mod:`.disk`) and its files (:mod:`.segments`)."""
