"""fusegrad."""
