"""Install Debian packages the stack needs (ClickHouse, PostgreSQL, Chromium) when missing."""

from __future__ import annotations

import os
import shutil
import subprocess


def ensure_debian_packages(packages: list[str]) -> None:
    """``apt-get install`` the packages (root only), after one ``apt-get update``."""
    missing = [p for p in packages if not _installed(p)]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            f"missing Debian packages {missing}: install them (apt-get install {' '.join(missing)}) "
            "or point careledger at existing servers (see README)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def _installed(package: str) -> bool:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                            capture_output=True, text=True)
    return result.returncode == 0 and "install ok installed" in result.stdout


if __name__ == "__main__":
    import sys

    ensure_debian_packages(sys.argv[1:])
