#!/usr/bin/env bash
# dashboard_test.sh <taskwald> <dashboard_test.py>: the dashboard in headless
# Chromium (dashboard_test.py says what it checks). Debian's python3 is
# named by path: the Selenium it needs is Debian's python3-selenium, which
# another python3 earlier on PATH (pyenv, a venv) would not see.
set -uo pipefail
for need in /usr/bin/python3 /usr/bin/chromium /usr/bin/chromedriver; do
  if [[ ! -x "${need}" ]]; then
    echo "FAIL: ${need} is missing: run tools/setup.sh (it installs python3," \
      "chromium, chromium-driver and python3-selenium)"
    exit 1
  fi
done
exec /usr/bin/python3 "$2" "$1"
