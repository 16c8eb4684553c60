#!/usr/bin/env bash
# Install Debian's chromium when it is missing: the browser the playground
# page's end-to-end test drives (web/browser_test.go). Only the distribution's
# package, never a downloaded browser build.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deps-browser: chromium is missing; run as root to install it with apt-get" >&2
	exit 1
fi
echo "deps-browser: installing chromium" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
