"""The gRPC API's protocol: sources in `flowforge/v1/*.proto`, generated code in `v1/`."""
