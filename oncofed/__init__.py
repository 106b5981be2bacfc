"""oncofed: exact federated statistics across cancer centres, without moving patient data."""

__version__ = "0.1.0"
