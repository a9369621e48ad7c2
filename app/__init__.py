"""Memory: multi-tenant long-term memory for AI applications."""
