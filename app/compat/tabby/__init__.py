"""Tabby's memory server routes under /memory: its backend's paths and `{"success": ...}` envelopes."""
