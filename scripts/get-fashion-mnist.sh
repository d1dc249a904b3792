#!/usr/bin/env bash
# Make Fashion-MNIST available: the Debian package where possible, else calikd's own verified downloader.
set -euo pipefail
PY=${PY:-python3}
if "$PY" -c "from calikd.data import load_dataset; load_dataset('fashion-mnist')" 2>/dev/null; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Fashion-MNIST from Debian (dataset-fashion-mnist)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null \
        && exit 0
fi
echo "downloading Fashion-MNIST with calikd's verified downloader"
"$PY" -m calikd data fetch fashion-mnist
