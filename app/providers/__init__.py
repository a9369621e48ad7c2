"""Model providers (embeddings now; chat in the pipeline), faked in tests only at the HTTP boundary."""
