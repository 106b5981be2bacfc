"""Generated protobuf and gRPC modules for oncofed.v1 — do not edit; run tasks.py protos."""
