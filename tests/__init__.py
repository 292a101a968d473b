"""FlowForge tests."""
