# Shared helpers for scripts/*: sourced, not run.
# POSIX sh: the token and engine scripts are /bin/sh (dash) scripts.
# shellcheck shell=sh

# apt_install PKG...: installs the Debian packages that are missing, quietly.
# Recommends are not installed, so name every package a script uses even
# when another one recommends it (swaks needs libnet-ssleay-perl for TLS).
apt_install() {
    _need=""
    for _pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$_pkg" 2>/dev/null | grep -q "install ok installed" || _need="$_need $_pkg"
    done
    [ -n "$_need" ] || return 0
    echo "==> installing Debian packages:$_need"
    export DEBIAN_FRONTEND=noninteractive
    _sudo=""
    [ "$(id -u)" -eq 0 ] || _sudo="sudo"
    # Postfix is a test peer only: never let its package configure or start a system instance.
    echo "postfix postfix/main_mailer_type select No configuration" | $_sudo debconf-set-selections
    # Test peers (Postfix, Unbound, slapd …) must not start as system services
    # on install: the tests start their own instances on loopback ports.
    _guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        _guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $_sudo tee "$_guard" >/dev/null
        $_sudo chmod +x "$_guard"
    fi
    # Several scripts may install at once (suites run in parallel): wait
    # for dpkg's lock instead of failing on it.
    $_sudo apt-get -o DPkg::Lock::Timeout=900 update -qq >/dev/null
    _rc=0
    # shellcheck disable=SC2086 # the package list splits on purpose
    $_sudo apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $_need >/dev/null || _rc=$?
    [ -z "$_guard" ] || $_sudo rm -f "$_guard"
    return $_rc
}

# py_module MODULE DEBIAN_PACKAGE [PIP_SPEC]: makes MODULE importable by the
# python3 on PATH. Debian's python3 gets the Debian package; another python3
# (pyenv, a venv) does not see Debian's packages and gets PIP_SPEC (default:
# the module's name) from PyPI. An empty DEBIAN_PACKAGE means PyPI either
# way (with pip from Debian's python3-pip where python3 has none; Debian's
# python3 is "externally managed", so pip is told this install is meant).
py_module() {
    python3 -c "import $1" 2>/dev/null && return 0
    if [ -n "$2" ]; then
        apt_install "$2"
        python3 -c "import $1" 2>/dev/null && return 0
    fi
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    # Suites run in parallel lanes and two may want the same module at
    # once: two pips writing one site-packages leave a half-installed
    # distribution that breaks the other (seen on a fresh machine with
    # selenium for the web and portal suites). One pip at a time, and the
    # second finds the module there.
    (
        flock 9
        python3 -c "import $1" 2>/dev/null && exit 0
        python3 -m pip install -q --root-user-action=ignore --break-system-packages \
            --no-warn-script-location "${3:-$1}"
    ) 9>"${TMPDIR:-/tmp}/sealgate-py-module.lock"
}

# section TITLE: a visible marker in long logs.
section() {
    printf '\n==> %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"
}
