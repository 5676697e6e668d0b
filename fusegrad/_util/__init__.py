"""Pure helpers every layer may import: dtype names, pytrees, the debug ladder, file I/O.

Nothing here imports the rest of fusegrad.
"""
