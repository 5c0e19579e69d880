"""One module per app.

A manifest's ``adapter: harmony.list_meetings`` names ``tools.adapters.harmony.list_meetings``.
"""
