"""From a decision to the partner page and back: the served ad, its sealed tokens, what is counted,
the caches it reads, delivery reports."""
