"""Value objects and the pure ad decision: the ground floor every room may use."""
