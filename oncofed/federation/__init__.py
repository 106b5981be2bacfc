"""The federation side of oncofed: what researchers' clients and the hub run (never patient data)."""
