"""Runs: executing one agent run end to end, and the history and logs they leave."""
