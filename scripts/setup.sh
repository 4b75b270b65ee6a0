#!/usr/bin/env bash
# One-shot set-up of a fresh machine: system libraries, a virtual environment, PyTorch and occsim.
#   VENV        where to create the virtual environment (default .venv)
#   TORCH_SPEC  the torch requirement installed first when none is present (default torch==2.13.0;
#               point pip at a CPU or CUDA index through PIP_INDEX_URL / PIP_EXTRA_INDEX_URL)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
PYTHON=${PYTHON:-python3}

# open3d needs libusb to import; headless rendering needs EGL/Mesa (and Vulkan, Xvfb for the
# slower offscreen paths).
DEB_PACKAGES="libusb-1.0-0 libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libgomp1 libvulkan1 mesa-vulkan-drivers xvfb"
missing=""
for package in $DEB_PACKAGES; do
    dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done

# Another apt or dpkg (often unattended-upgrades just after boot) may hold the package locks;
# apt-get would fail at once, so wait for it, at most APT_WAIT_SECONDS.
APT_WAIT_SECONDS=${APT_WAIT_SECONDS:-300}
APT_LOCKS=${APT_LOCKS:-"/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock"}

apt_lock_held() {  # prints the first lock file another process holds (dpkg uses fcntl locks)
    "$PYTHON" - $APT_LOCKS <<'PY'
import fcntl, os, sys
for path in sys.argv[1:]:
    if not os.path.exists(path):
        continue
    with open(path, "a") as lock:
        try:
            fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            print(path)
            break
PY
}

apt_processes() {  # the package tools that are running, e.g. "unattended-upgr(812)"
    local pid name found=""
    for pid in /proc/[0-9]*; do
        name=$(cat "$pid/comm" 2>/dev/null) || continue
        case "$name" in
            apt|apt-get|aptitude|dpkg|unattended-upgr|packagekitd) found="$found $name(${pid#/proc/})" ;;
        esac
    done
    echo "${found:- an unknown process}"
}

wait_for_apt() {
    local waited=0 lock
    while lock=$(apt_lock_held) && [ -n "$lock" ]; do
        if [ "$waited" -ge "$APT_WAIT_SECONDS" ]; then
            echo "error: $lock is still held by$(apt_processes) after ${waited} s;" \
                "wait for it to finish, then run this again" >&2
            return 1
        fi
        if [ "$waited" = 0 ]; then
            echo "waiting for$(apt_processes) to release $lock (up to ${APT_WAIT_SECONDS} s)"
        fi
        sleep 5
        waited=$((waited + 5))
    done
}

if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian packages:$missing"
        wait_for_apt
        apt-get -o DPkg::Lock::Timeout="$APT_WAIT_SECONDS" update -qq
        wait_for_apt
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$APT_WAIT_SECONDS" install -y -qq --no-install-recommends $missing >/dev/null
    else
        echo "warning: missing system packages:$missing (install them as root: apt-get install$missing)" >&2
    fi
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# Install torch first: an unpinned torch pulled in by a dependency may be a multi-GB CUDA build.
"$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
"$VENV/bin/python" -m pip install -q -e ".[dev,rl]"
echo "occsim installed in $VENV"
