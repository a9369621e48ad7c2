"""Compatibility surfaces: other products' APIs as thin translations over the memory services.

Each surface parses its own request shapes, calls the same feature services with the same
`MemoryAuthScope` (so the same owner-scoped SQL runs underneath), and reshapes the answer. No
rule, query or check lives here that /mem/v1 does not also go through.
"""
