# Shared set-up steps for scripts/quickstart and scripts/test (sourced, not run).
# Debian: installs what is missing with apt-get, starts the Docker engine when it is not running,
# and makes the project's virtualenv in .venv.

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

say() { printf '\033[1;36m==>\033[0m %s\n' "$*" >&2; }

install_system() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
  command -v losetup >/dev/null 2>&1 || missing+=(util-linux)
  if [ "${AL_WITH_REGISTRY:-}" = 1 ]; then
    command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
  fi
  # Egress control: firewall rules for runs' networks and host users (owner, comment, conntrack).
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
  # Tests make git repositories and ssh keys (ssh-keygen) and talk to runs' ssh-agents (ssh-add).
  command -v git >/dev/null 2>&1 || missing+=(git)
  command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Debian's chromium, which the dashboard's browser tests drive headless through Playwright
# (Playwright's own browser download cannot work here, and CI must not depend on it).
install_browser() {
  if [ -x /usr/bin/chromium ]; then return 0; fi
  say "installing chromium"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

start_docker() {
  if docker info >/dev/null 2>&1 || $SUDO docker info >/dev/null 2>&1; then return 0; fi
  say "starting the Docker engine"
  if [ -d /run/systemd/system ] && $SUDO systemctl start docker 2>/dev/null; then
    :
  else
    $SUDO sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  fi
  for _ in $(seq 1 60); do
    if $SUDO docker info >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "error: the Docker engine did not start; see /var/log/dockerd.log" >&2
  return 1
}

# A registry on 127.0.0.1:5000 (swarm tests push the image chain there), served with our config
# (the package's own demands htpasswd auth and listens everywhere). Left running, as dockerd is.
start_registry() {
  if curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:5000/v2/ 2>/dev/null; then return 0; fi
  if [ -d /run/systemd/system ] && systemctl is-active --quiet docker-registry 2>/dev/null; then
    say "stopping the packaged docker-registry service (it demands auth on :5000)"
    $SUDO systemctl disable --now docker-registry
  elif curl -sS -o /dev/null --max-time 2 http://127.0.0.1:5000/v2/ 2>/dev/null; then
    $SUDO service docker-registry stop >/dev/null 2>&1 || true  # the package's, without systemd
  fi
  say "starting the registry on 127.0.0.1:5000"
  $SUDO mkdir -p /var/lib/al-registry
  $SUDO install -D -m 0644 scripts/registry.yml /etc/al-registry/config.yml
  $SUDO sh -c 'nohup docker-registry serve /etc/al-registry/config.yml >/var/log/al-registry.log 2>&1 &'
  for _ in $(seq 1 30); do
    if curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:5000/v2/ 2>/dev/null; then return 0; fi
    sleep 1
  done
  echo "error: the registry did not start; see /var/log/al-registry.log" >&2
  return 1
}

make_venv() {  # $1: extras, e.g. "[dev]"
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    python3 -m venv .venv
  fi
  say "installing action-llama$1 into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".$1"
}
