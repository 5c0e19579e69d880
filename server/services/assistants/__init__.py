"""Companion's own OAuth 2.1 authorization server, as use cases: the assistants (clients) that sign people in,
the consent a person gives them, and the codes and tokens that follow. ``server/oauth`` puts them on the wire."""
