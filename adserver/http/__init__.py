"""The HTTP side: the app's typed keys, middleware, answers, the edge, and the partner, admin and
ops handlers."""
