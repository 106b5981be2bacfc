"""The researcher's client: seal, submit, verify, sum and finalise (the federation issue fills it)."""
