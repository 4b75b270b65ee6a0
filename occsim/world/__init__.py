"""The procedural driving world."""
