"""Patch registry and the patch modules (one module per patch)."""
