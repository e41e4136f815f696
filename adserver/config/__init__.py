"""Kaeru's configuration, read and checked once at start-up."""
