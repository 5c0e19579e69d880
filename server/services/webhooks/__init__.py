"""Webhooks: an outbox written with each change, delivered signed, retried with backoff."""
