"""Export targets, one module each."""
