"""The `al` command line: each command parses, calls a service, renders."""
