"""Names under which a project's state is found by other `al` processes.

The daemon writes these and light clients (`al run` / `al stat` through the daemon) read them.
Standard library only, and nothing else in the package imports it eagerly: the clients load it
before any of pydantic, docker-py or FastAPI, and must stay fast.
"""

#: A project's state folder (history database, logs, workspaces, the daemon marker).
STATE_DIR = ".al"
#: What a project's load reads: the project's files and those that make a folder under
#: agents/ an agent's (even before its SKILL.md is written).
PROJECT_FILES = ("config.toml", "Dockerfile")
AGENT_FILES = ("SKILL.md", "config.toml", "Dockerfile", "test-script.sh")
#: The project database in STATE_DIR.
DB_NAME = "action-llama.db"
#: Written by `al start` into STATE_DIR while it runs: {"pid", "port", "started"}.
DAEMON_FILE = "daemon.json"
#: Held (flock) by the one scheduler of a project, in STATE_DIR, for its whole life.
DAEMON_LOCK = "daemon.lock"
#: The credential holding the gateway's operator API key, and its field.
API_KEY_TYPE = "gateway_api_key"
API_KEY_FIELD = "key"
