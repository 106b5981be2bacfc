"""The hub: relay, task queue and participant sets (the federation issue fills it)."""
