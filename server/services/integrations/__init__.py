"""Connected apps as people manage them: setup, OAuth, lifecycle and sync."""
