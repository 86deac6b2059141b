# Shared helpers for scripts/*: sourced, not run.
# shellcheck shell=bash

# apt_install PKG...: installs the Debian packages that are missing, quietly.
# Recommends are not installed, so name every package a script uses even
# when another one recommends it (swaks needs libnet-ssleay-perl for TLS).
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
    # Several scripts may install at once (suites run in parallel): wait
    # for dpkg's lock instead of failing on it.
    local lock=(-o DPkg::Lock::Timeout=900)
    $sudo apt-get "${lock[@]}" update -qq >/dev/null
    local rc=0
    $sudo apt-get "${lock[@]}" install -y -qq --no-install-recommends "${need[@]}" >/dev/null || rc=$?
    [ -z "$guard" ] || $sudo rm -f "$guard"
    return $rc
}

# section TITLE: a visible marker in long logs.
section() {
    printf '\n==> %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"
}
