"""Debian packages the launcher installs when a broker's binary is missing."""

from __future__ import annotations

import functools
import shutil
import subprocess

from unibus.devstack._errors import DevStackError

__all__ = ["debian_version", "ensure_debian_package"]

_updated = False


def ensure_debian_package(binary: str, package: str) -> str:
    """Path of ``binary``, installing ``package`` with apt-get first if it is missing."""
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin")
    if found:
        return found
    global _updated
    print(f"installing Debian package {package} (for {binary})", flush=True)
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           "RUNLEVEL": "1"}
    steps = [] if _updated else [["apt-get", "update", "-q"]]
    steps.append(["apt-get", "install", "-y", "-q", "--no-install-recommends", package])
    for argv in steps:
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise DevStackError(f"`{' '.join(argv)}` failed:\n{tail}")
    _updated = True
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin")
    if not found:
        raise DevStackError(f"{package} installed but {binary} is not on PATH")
    return found


@functools.cache
def debian_version(package: str) -> str:
    """The installed version of ``package`` (``<package> (not installed)`` when missing)."""
    result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                            capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else f"{package} (not installed)"
