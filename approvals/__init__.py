"""Deciding whether a call may run, moving approvals through their states, and the audit trail.

The decision itself is computed from plain data, with no I/O, so it can be
explained, replayed and benchmarked without a database.
"""
