"""The REST API under /api/v1. Every error body is ``{"error": {"code", "message", "details"}}``."""
