"""Memory as MCP tools: the /mcp endpoint, on the same auth scope and services as /mem/v1."""
