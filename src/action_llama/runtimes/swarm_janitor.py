"""Removing a run's tmpfs volumes on a node `al` cannot reach.

A run's /tmp, /home/node and per-run /workspace are volumes the node's engine makes when the
task starts, and Swarm leaves them when the service goes. On this node `al` removes them
itself; on another it can only ask Swarm to run something there: a short task of the run's
own image, as root, with that node's Docker socket, that waits for the run's container to be
gone and then removes the volumes labelled with the run (an engine refuses to remove a
volume in use). The
image is the one the operator's chain built; whoever may change it can already create
services on every node as a manager.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from action_llama.runtimes.swarm_spec import LABEL_PROJECT, swarm_api

if TYPE_CHECKING:
    import docker

#: How long the janitor may take, from creating its service to its end.
JANITOR_SECONDS = 60
SOCKET = "/var/run/docker.sock"


#: Run by the image's python3 (the in-run entry needs it, so every chain image has it): waits
#: for the run's containers to be gone, then removes the volumes labelled with the run.
SCRIPT = """
import http.client, json, socket, sys, time, urllib.parse
class Engine(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("/var/run/docker.sock")
def call(method, path):
    connection = Engine("engine", timeout=30)
    connection.request(method, path)
    answer = connection.getresponse()
    return answer.status, answer.read()
run = urllib.parse.quote(json.dumps({"label": ["al.run=" + sys.argv[1]]}))
for _ in range(150):
    if json.loads(call("GET", "/containers/json?all=1&filters=" + run)[1]) == []:
        break
    time.sleep(0.2)
for volume in json.loads(call("GET", "/volumes?filters=" + run)[1])["Volumes"] or []:
    print(volume["Name"], call("DELETE", "/volumes/" + volume["Name"])[0])
"""


def sweep_node(
    client: docker.DockerClient, node_id: str, image: str, run_id: str, project: str
) -> bool:
    """Remove run `run_id`'s volumes on node `node_id`; whether that was done in time."""
    api = swarm_api(client)
    template = {
        "ContainerSpec": {
            "Image": image,
            "Command": ["python3", "-c", SCRIPT, run_id],
            "User": "0:0",
            "ReadOnly": True,
            "CapabilityDrop": ["ALL"],
            "Mounts": [{"Type": "bind", "Source": SOCKET, "Target": SOCKET}],
            "Labels": {LABEL_PROJECT: project, "al.janitor": run_id},
        },
        "RestartPolicy": {"Condition": "none"},
        "Placement": {"Constraints": [f"node.id == {node_id}"]},
    }
    service = api.create_service(
        template,
        name=f"al-janitor-{run_id}",
        labels={LABEL_PROJECT: project, "al.janitor": run_id},
        mode={"Replicated": {"Replicas": 1}},
    )["ID"]
    try:
        deadline = time.monotonic() + JANITOR_SECONDS
        while time.monotonic() < deadline:
            states = [str(t["Status"]["State"]) for t in api.tasks(filters={"service": service})]
            if states and states[0] in ("complete", "failed", "rejected", "shutdown", "orphaned"):
                return states[0] == "complete"
            time.sleep(0.25)
        return False
    finally:
        api.remove_service(service)
