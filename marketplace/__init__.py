"""The marketplace: registry, publishing checks, scoring and install."""
