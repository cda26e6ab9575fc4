#!/usr/bin/env bash
# Install Debian's Chromium for the browser test when it is missing. Needs root or sudo;
# without either it explains what to do, and the browser test is skipped (CI sets
# FLATMINIMA_REQUIRE_BROWSER=1, which turns the skip into a failure).
set -u
for b in chromium chromium-browser google-chrome; do
  command -v "$b" >/dev/null 2>&1 && exit 0
done
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
  echo "install-chromium: Chromium not found and no root/sudo; run 'sudo apt-get install chromium' to enable the browser test" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null; } \
  || echo "install-chromium: apt-get could not install chromium" >&2
command -v chromium >/dev/null 2>&1 && echo "install-chromium: $(chromium --version 2>/dev/null)"
exit 0
