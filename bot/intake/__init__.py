"""Intake: the appservice endpoint and the durable work queue behind it."""
