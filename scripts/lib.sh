# Shared helpers for scripts/*: sourced, not run.
# shellcheck shell=bash

# apt_install PKG...: installs the Debian packages that are missing, quietly.
apt_install() {
    local need=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
    done
    [ ${#need[@]} -eq 0 ] && return 0
    echo "==> installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Postfix is a test peer only: never let its package configure or start a system instance.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # Test peers (Postfix, Unbound, slapd …) must not start as system services
    # on install: the tests start their own instances on loopback ports.
    local guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$guard" >/dev/null
        $sudo chmod +x "$guard"
    fi
    $sudo apt-get update -qq >/dev/null
    local rc=0
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || rc=$?
    [ -z "$guard" ] || $sudo rm -f "$guard"
    return $rc
}

# section TITLE: a visible marker in long logs.
section() {
    printf '\n==> %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"
}
