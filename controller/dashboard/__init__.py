"""The controller's web dashboard (`--http-listen`): a thin face onto the same core, checks and audit as gRPC."""
