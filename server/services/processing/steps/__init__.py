"""Processing steps that ship with the server; plug-ins add theirs through the ``companion.processing_steps`` group."""
