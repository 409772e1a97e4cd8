"""Ways to run an agent: the Runtime protocol and its implementations."""
