"""The integration store: one database behind the tools, the REST API and the console.

It imports nothing from ``server``, ``tools`` or ``approvals``; they import it.
"""
