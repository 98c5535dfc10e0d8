"""Storage: the durable event queue, media hashes, verdicts, actions and the audit log."""
