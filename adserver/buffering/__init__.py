"""Writes that must survive Redis trouble: buffered in memory, replayed once, spilled to disk on
shutdown."""
