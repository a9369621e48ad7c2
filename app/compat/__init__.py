"""Compatibility surfaces: other products' APIs, each a thin translation over our own services."""
