"""Generated gRPC code for flowforge.v1 (.ci/protos)."""
