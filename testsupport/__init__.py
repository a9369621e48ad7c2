"""Test support shared by tests/ and bench/: a fake OpenAI / Anthropic server on 127.0.0.1."""
