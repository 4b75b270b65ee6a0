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
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian packages:$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
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
