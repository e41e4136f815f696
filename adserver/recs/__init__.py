"""Recommendations on the shop's own pages: which products a placement shows (pure)."""
