"""Toy plug-ins, one per extension axis, each added the way docs/extending.md says: new files
plus one registration, touching no file of the package."""
