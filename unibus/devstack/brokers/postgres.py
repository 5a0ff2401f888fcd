"""PostgreSQL 15 from the Debian package ``postgresql-15``: a store for the idempotent
consumer and the transactional outbox.

The cluster lives in ``<state>/data`` (created by ``initdb`` on first start, trust auth, a
database ``unibus``) and ``postgres`` runs in the foreground under the launcher, listening on
127.0.0.1 only. PostgreSQL refuses to run as root; as root the launcher runs it in a user
namespace where it is the unprivileged ``postgres`` user while its files stay the launcher's
(see docs/design/stores-devstack.md), or, where user namespaces are not allowed, as the
``postgres`` user itself with the state directory handed over to it.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from unibus.devstack import _probes, _process
from unibus.devstack._errors import DevStackError
from unibus.devstack._packages import debian_version, ensure_debian_package
from unibus.devstack._spec import BrokerSpec, Launch

PORTS = {"client": 5432}
BIN = Path("/usr/lib/postgresql/15/bin")
USER = "postgres"  # the cluster's superuser role, and the OS user it runs as under root
DATABASE = "unibus"
# A unix socket path must fit in sockaddr_un (108 bytes); longer state dirs get TCP only.
_SOCKET_PATH_LIMIT = 100


def spec(ports: Mapping[str, int]) -> BrokerSpec:
    return BrokerSpec(name="postgres", version=debian_version("postgresql-15"),
                      ports=dict(ports),
                      url=f"postgresql://{USER}@127.0.0.1:{ports['client']}/{DATABASE}",
                      prepare=functools.partial(prepare, ports=ports),
                      ready=functools.partial(_probes.postgres, ports["client"], USER, DATABASE),
                      start_timeout=60.0, kind="store",
                      # SIGTERM is a "smart" shutdown that waits for every client to leave.
                      stop_signal=signal.SIGINT)


def prepare(state: Path, cache: Path, *, ports: Mapping[str, int]) -> Launch:
    ensure_debian_package(str(BIN / "postgres"), "postgresql-15")
    _stop_packaged_service(ports["client"])
    state.mkdir(parents=True, exist_ok=True)
    run_as, owner = _unprivileged_prefix(state)
    data = state / "data"
    if not (data / "PG_VERSION").exists():
        _create_cluster(state, run_as, owner)
    _remove_stale_locks(state)
    sockets = str(state) if len(str(state)) < _SOCKET_PATH_LIMIT else ""
    argv = [*run_as, str(BIN / "postgres"), "-D", str(data),
            "-c", "listen_addresses=127.0.0.1", "-c", f"port={ports['client']}",
            "-c", f"unix_socket_directories={sockets}", "-c", "logging_collector=off"]
    return Launch(argv=argv, env={"LC_ALL": "C"}, cwd=state)


def _create_cluster(state: Path, run_as: list[str], owner: tuple[int, int]) -> None:
    """initdb plus the ``unibus`` database, in a scratch directory renamed into place when
    complete: an interrupted first start leaves nothing half-made behind."""
    scratch = state / "data.new"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(mode=0o700)
    os.chown(scratch, *owner)
    env = {**os.environ, "LC_ALL": "C"}
    steps: list[tuple[list[str], str | None]] = [
        ([*run_as, str(BIN / "initdb"), "-D", str(scratch), "-U", USER, "--auth=trust",
          "--no-locale", "--encoding=UTF8", "--no-instructions"], None),
        # Single-user mode: the database exists before the server ever accepts a client.
        ([*run_as, str(BIN / "postgres"), "--single", "-D", str(scratch), "postgres"],
         f"CREATE DATABASE {DATABASE}\n"),
    ]
    for argv, stdin in steps:
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env,
                                cwd=state, check=False)
        if result.returncode != 0 or "ERROR:" in result.stdout + result.stderr:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise DevStackError(f"postgres: `{' '.join(argv)}` failed:\n{tail}")
    scratch.rename(state / "data")


def _unprivileged_prefix(state: Path) -> tuple[list[str], tuple[int, int]]:
    """How to run the server's binaries (directly, unless we are root: PostgreSQL refuses),
    and who must own the cluster's files on disk."""
    if os.geteuid() != 0:
        return [], (os.geteuid(), os.getegid())
    user = _postgres_user()
    if _user_namespaces_work(user.pw_uid, user.pw_gid):
        # Inside, the process is `postgres`; outside, its files are root's as before, so a
        # state dir under /root (mode 700) still works and nothing is chowned.
        prefix = ["unshare", "--user", f"--map-user={user.pw_uid}",
                  f"--map-group={user.pw_gid}", "--"]
        _own(state, os.geteuid(), os.getegid())
        return prefix, (os.geteuid(), os.getegid())
    prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
              "--"]
    _own(state, user.pw_uid, user.pw_gid)
    probe = subprocess.run([*prefix, "test", "-w", str(state)], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        raise DevStackError(
            f"postgres: user namespaces are not available, and the `{USER}` user cannot reach "
            f"{state} (a parent directory is private); set UNIBUS_DEV_HOME to a directory "
            f"every user can traverse, e.g. /var/tmp/unibus-dev")
    return prefix, (user.pw_uid, user.pw_gid)


def _own(state: Path, uid: int, gid: int) -> None:
    """Give the state dir to ``uid`` (a change of mode between runs, e.g. a machine where user
    namespaces became unavailable, must not leave the cluster with the wrong owner)."""
    tops = [p for p in (state, state / "data") if p.exists()]
    if all((p.stat().st_uid, p.stat().st_gid) == (uid, gid) for p in tops):
        return
    for path in (state, *state.rglob("*")):
        if path.is_symlink():
            continue
        stat = path.stat()
        if (stat.st_uid, stat.st_gid) != (uid, gid):
            os.chown(path, uid, gid)


def _postgres_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError as exc:  # postgresql-common creates it; someone removed it
        raise DevStackError(f"postgres: there is no `{USER}` user to run the server as "
                            f"(reinstall postgresql-common)") from exc


@functools.cache
def _user_namespaces_work(uid: int, gid: int) -> bool:
    try:
        result = subprocess.run(["unshare", "--user", f"--map-user={uid}", f"--map-group={gid}",
                                 "--", "true"], capture_output=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _remove_stale_locks(state: Path) -> None:
    """A SIGKILLed postmaster leaves ``postmaster.pid`` and the socket's lock file behind;
    PostgreSQL refuses to start while the PID in them exists, and that PID may now be a
    zombie waiting to be reaped or, after a reboot, anybody's."""
    for lock in (state / "data" / "postmaster.pid", *state.glob(".s.PGSQL.*.lock")):
        try:
            pid = int(lock.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            command = b""
        if not _process.alive(pid) or b"postgres" not in command:
            lock.unlink(missing_ok=True)


def _stop_packaged_service(port: int) -> None:
    # apt-get install may start the packaged cluster (15/main) on 5432: it must not hold our
    # port. The launcher checked the port was free just before, so whatever answers now
    # was started by the install.
    if _process.port_open(port):
        subprocess.run(["service", "postgresql", "stop"], capture_output=True, check=False)
