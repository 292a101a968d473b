"""The gRPC API (`flowforge.v1`): the server, authentication, and the servicers."""
