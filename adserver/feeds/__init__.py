"""Product feeds: reading them as they arrive, importing them, and the grace for events that come
before their products."""
