"""The sandbox host: everything that executes connector components."""
