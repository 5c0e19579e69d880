"""The app manifests shipped with Companion, one YAML file per app."""

from pathlib import Path

MANIFEST_DIR = Path(__file__).parent
