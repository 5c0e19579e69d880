"""App adapters and the registry that joins them to their manifests."""
