"""Small helpers that import nothing else from fusegrad."""
