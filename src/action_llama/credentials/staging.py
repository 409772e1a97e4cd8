"""Stage what one run needs into a fresh directory only the run's user can read.

    <root>/<run id>-<al pid>-<random>/     0711, the run's stage (see `make_run_dir`)
        static/                           agent files, owned by the run's user, 0500/0400
        credentials/<type>/<instance>/<field>   the refs it needs, owned likewise

`credentials/` is mounted read-only at /credentials (containers) or passed as
AL_CREDENTIALS_PATH (host-user runs). The root lives in /dev/shm when it can (so secrets never
touch a disk); a stage is removed when its run ends however it ends, and a later run sweeps
stages left by an `al` process that was killed outright, unless their run still goes on: a
restarted scheduler re-adopts such a run and removes its stage when it ends (`stages_of`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from action_llama.credentials.refs import CredentialRef
from action_llama.credentials.store import CredentialStore
from action_llama.credentials.types import BUILTIN, provider_key_type
from action_llama.errors import CredentialMissing, RunError
from action_llama.procs import alive

#: Providers whose servers often need no key (a local Ollama, vLLM...): staged only if present.
KEY_OPTIONAL_PROVIDERS = ("openai-compatible",)
#: Secret values shorter than this are not redacted from logs (too likely to match by chance).
MIN_REDACT = 6


@dataclass(frozen=True)
class StagedCredentials:
    path: Path
    #: Every secret value staged, for redaction of run output.
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def remove(self) -> None:
        remove_tree(self.path)


def remove_tree(path: Path) -> None:
    """Delete a stage, including read-only directories the run's user owned."""
    for dirpath, _dirs, _files in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(dirpath, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def refs_for(
    credentials: list[str], models: list[tuple[str, str]]
) -> tuple[list[CredentialRef], list[CredentialRef]]:
    """(required refs, optional refs) of an agent: what it lists, plus its models' keys.

    A listed `<provider>_key:<instance>` is the key its models use (named instances honoured).
    `models` holds (provider, auth type) pairs.
    """
    required = list(dict.fromkeys(CredentialRef.parse(r) for r in credentials))
    optional: list[CredentialRef] = []
    listed_types = {ref.type for ref in required}
    for provider, auth_type in models:
        if auth_type == "pi_auth":
            continue
        key = CredentialRef(provider_key_type(provider))
        if key.type in listed_types:
            continue
        listed_types.add(key.type)
        (optional if provider in KEY_OPTIONAL_PROVIDERS else required).append(key)
    return required, optional


def model_key_ref(provider: str, credentials: list[str]) -> CredentialRef:
    """The credential a model of `provider` authenticates with: the agent's own listed
    `<provider>_key[:instance]` if any (named instances honoured), else the default one."""
    kind = provider_key_type(provider)
    for text in credentials:
        ref = CredentialRef.parse(text)
        if ref.type == kind:
            return ref
    return CredentialRef(kind)


def check_present(store: CredentialStore, agent: str, refs: list[CredentialRef]) -> None:
    missing = [ref for ref in refs if not store.has(ref)]
    if not missing:
        return
    names = ", ".join(f'"{ref}"' for ref in missing)
    adds = "\n".join(f"al creds add {ref}" for ref in missing)
    raise CredentialMissing(
        f"Agent {agent} needs credential{'s' if len(missing) > 1 else ''} {names}, "
        "not in the credential store.",
        hint=f"Add {'them' if len(missing) > 1 else 'it'} with:\n{adds}",
    )


def staging_root() -> Path:
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    root = base / f"al-stage-{os.geteuid()}"
    root.mkdir(mode=0o711, exist_ok=True)
    return root


def make_run_dir(run_id: str) -> Path:
    """A fresh stage for one run (after sweeping stages of `al` processes that died)."""
    root = staging_root()
    sweep_stale(root)
    path = Path(tempfile.mkdtemp(prefix=f"{run_id}-{os.getpid()}-", dir=root))
    path.chmod(0o711)
    return path


#: A stage younger than this is never swept: its `al` may have been killed while the run's
#: container was being started (no process of the run shows yet), and the scheduler that
#: adopts the run reads its secrets from it.
STALE_AFTER = 120.0


def sweep_stale(root: Path) -> None:
    """Remove staging dirs whose `al` process no longer exists (killed with SIGKILL) and
    whose run has ended too (a live run keeps its stage: it is mounted, or read by path),
    once they are STALE_AFTER seconds old."""
    now = time.time()
    for path in root.iterdir():
        run_id, _, rest = path.name.partition("-")
        pid_text = rest.partition("-")[0]
        if not pid_text.isdigit() or alive(int(pid_text), None) or run_alive(run_id):
            continue
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime >= STALE_AFTER:
                remove_tree(path)


def run_alive(run_id: str) -> bool:
    """Whether run `run_id` still has a live process."""
    return bool(run_pids(run_id))


def run_pids(run_id: str) -> list[int]:
    """Live processes carrying AL_RUN_ID=<run_id> in their environment: a container's
    processes show on the host too, so this finds the processes of a run of any runtime
    (reading other users' environments needs root; without it only our own are seen)."""
    tag = f"AL_RUN_ID={run_id}".encode()
    found = []
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                environ = (entry / "environ").read_bytes()
                if tag in environ.split(b"\0") and alive(int(entry.name), None):
                    found.append(int(entry.name))
    return found


def stages_of(run_id: str) -> list[Path]:
    """The stage(s) of run `run_id`, whichever `al` process made them."""
    return sorted(staging_root().glob(f"{run_id}-*"))


def staged_secrets(stage: Path) -> tuple[str, ...]:
    """The secret values staged in `stage`, read back from its files (to redact the output of
    a run adopted from another process), by the rules `stage` applies."""
    found: list[str] = []
    credentials = stage / "credentials"
    for file in sorted(credentials.glob("*/*/*")):
        kind = BUILTIN.get(file.parent.parent.name)
        spec = kind.field(file.name) if kind else None
        if spec is not None and not spec.secret:
            continue
        with contextlib.suppress(OSError, UnicodeDecodeError):
            value = file.read_text(encoding="utf-8").removesuffix("\n")
            if len(value) >= MIN_REDACT:
                found.append(value)
    return tuple(found)


def stage(
    store: CredentialStore,
    path: Path,
    required: list[CredentialRef],
    optional: list[CredentialRef],
    owner: tuple[int, int],
    substitutes: Mapping[CredentialRef, Mapping[str, str | None]] | None = None,
) -> StagedCredentials:
    """Copy the refs into the new directory `path`, owned by `owner` (uid, gid), files 0400;
    a field in `substitutes` (ref → field → placeholder) is staged as its placeholder, or not
    at all when that is None (the run's ssh-agent holds it)."""
    path.mkdir(mode=0o700)
    secrets: list[str] = []
    try:
        for ref in [*required, *(r for r in optional if store.has(r))]:
            kind = BUILTIN.get(ref.type)
            target = path / ref.type / ref.instance
            target.mkdir(parents=True, mode=0o700)
            swapped = (substitutes or {}).get(ref, {})
            for name, real in store.read(ref).items():
                value = swapped.get(name, real)
                if value is None:
                    continue
                file = target / name
                fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(value + "\n")
                spec = kind.field(name) if kind else None
                secret = spec is None or spec.secret
                if secret and name not in swapped and len(value) >= MIN_REDACT:
                    secrets.append(value)
        hand_over(path, owner)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return StagedCredentials(path, tuple(secrets))


def hand_over(path: Path, owner: tuple[int, int]) -> None:
    """Make the tree readable by the run's user only (the caller made it 0700/0400)."""
    uid, gid = owner
    if os.geteuid() == 0:
        for dirpath, _dirs, filenames in os.walk(path):
            os.chown(dirpath, uid, gid)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), uid, gid)
        return
    if os.geteuid() == uid:
        return
    raise RunError(
        f"Cannot hand credentials to the run's user (uid {uid}) without root: only that user "
        "may read them, and al runs as another user.",
        hint="Run al as root (sudo), or as the user the run uses.",
    )
