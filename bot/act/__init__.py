"""Acting on decisions: the homeserver client, room powers, the executor and its retries, enforcement and incidents."""
