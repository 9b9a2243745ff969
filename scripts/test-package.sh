#!/usr/bin/env bash
# The .deb, end to end (part of `make test`; needs root and cargo-deb, skipped otherwise):
# builds it with cargo-deb, checks its contents, installs it, validates the unit, runs the
# installed daemon the way its systemd unit would (systemd is not PID 1 on a build machine:
# the unit's ExecStart, User, Group, capabilities, memlock limit, runtime directory and umask
# are read from the installed unit file and applied with ip netns / prlimit / setpriv), in a
# network namespace holding the interface the installed config names, asks it `akactl stats`
# and its metrics, stops it with SIGTERM, then removes and purges the package and checks what
# is left. Everything it creates is removed on exit. Any missing file, wrong path, wrong
# owner, missing capability or failing step fails the test.
#
#   scripts/test-package.sh            # build the release binaries, then package them
#   AKAGATE_DEB=path.deb scripts/test-package.sh   # test an existing package
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PKG=akagate

step() { echo "== package test: $*"; }
fail() {
    echo "package test FAILED: $*" >&2
    exit 1
}
skip() {
    echo "package test skipped: $*"
    exit 0
}

[[ $(id -u) == 0 ]] || skip "needs root (dpkg -i, a network namespace, setpriv)"
[[ -n ${AKAGATE_DEB:-} ]] || cargo deb --version >/dev/null 2>&1 ||
    skip "cargo-deb is not installed (cargo install cargo-deb --locked)"
for tool in dpkg dpkg-deb ip setpriv prlimit; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
done
if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q ' installed$'; then
    skip "package $PKG is already installed on this machine; not touching it"
fi
[[ ! -e /run/akagate/akagate.sock ]] || skip "an akagate control socket exists in /run/akagate"

WORK=$(mktemp -d)
NS="akgpkg$$"
DAEMON_PID=
USER_EXISTED=$(getent passwd akagate >/dev/null && echo yes || echo no)
RUN_DIR_EXISTED=$([[ -d /run/akagate ]] && echo yes || echo no)

cleanup() {
    local rc=$?
    set +e
    if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -KILL "$DAEMON_PID"
        wait "$DAEMON_PID" 2>/dev/null
    fi
    ip netns del "$NS" 2>/dev/null
    if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -qv not-installed; then
        dpkg --purge "$PKG" >/dev/null 2>&1
    fi
    if [[ $USER_EXISTED == no ]] && getent passwd akagate >/dev/null; then
        userdel akagate 2>/dev/null
        getent group akagate >/dev/null && groupdel akagate 2>/dev/null
    fi
    [[ $RUN_DIR_EXISTED == no ]] && rm -rf /run/akagate
    if [[ $rc != 0 && -f $WORK/daemon.log ]]; then
        echo "--- daemon log" >&2
        tail -n 40 "$WORK/daemon.log" >&2
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

# --- build and inspect ---------------------------------------------------------------------
DEB=${AKAGATE_DEB:-}
if [[ -z $DEB ]]; then
    step "cargo build --release (akagate, akactl) and cargo deb"
    cargo build --release -q -p akagate -p akagate-tools
    cargo deb --no-build --strip -q -o "$WORK/" >/dev/null
    DEB=$(ls "$WORK"/*.deb)

    step "make install DESTDIR=... PREFIX=/opt/akagate, twice (a config present is kept)"
    dest="$WORK/dest"
    make -s install DESTDIR="$dest" PREFIX=/opt/akagate >/dev/null
    echo "# edited" >>"$dest/etc/akagate/akagate.toml"
    make -s install DESTDIR="$dest" PREFIX=/opt/akagate >/dev/null
    for f in opt/akagate/bin/akagate opt/akagate/bin/akactl etc/akagate/akagate.toml \
        opt/akagate/lib/systemd/system/akagate.service opt/akagate/lib/sysusers.d/akagate.conf \
        opt/akagate/share/doc/akagate/CONFIG.md; do
        [[ -f $dest/$f ]] || fail "make install did not install /$f"
    done
    grep -qx 'ExecStart=/opt/akagate/bin/akagate --config /etc/akagate/akagate.toml' \
        "$dest/opt/akagate/lib/systemd/system/akagate.service" ||
        fail "make install's unit does not start /opt/akagate/bin/akagate"
    grep -qx '# edited' "$dest/etc/akagate/akagate.toml" || fail "make install overwrote the config"
    make -s uninstall DESTDIR="$dest" PREFIX=/opt/akagate >/dev/null
    [[ -z $(find "$dest/opt" -type f) ]] || fail "make uninstall left $(find "$dest/opt" -type f)"
fi
[[ -f $DEB ]] || fail "no package at '$DEB'"
step "contents of $(basename "$DEB")"
dpkg-deb --contents "$DEB" | awk '{print $1, $2, $NF}' >"$WORK/contents"
expect_entry() { # mode owner/group path
    grep -qxF -- "$1 0/0 ./$2" "$WORK/contents" || {
        cat "$WORK/contents" >&2
        fail "the package lacks $1 0/0 $2"
    }
}
expect_entry -rwxr-xr-x usr/bin/akagate
expect_entry -rwxr-xr-x usr/bin/akactl
expect_entry -rw-r--r-- etc/akagate/akagate.toml
expect_entry -rw-r--r-- usr/share/doc/akagate/OPERATIONS.md
grep -qE '^-rw-r--r-- 0/0 \./(usr/)?lib/systemd/system/akagate\.service$' "$WORK/contents" ||
    fail "the package lacks the systemd unit"
dpkg-deb --info "$DEB" conffiles | grep -qx /etc/akagate/akagate.toml ||
    fail "/etc/akagate/akagate.toml is not a conffile"

# --- install -------------------------------------------------------------------------------
step "install"
if command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$DEB" \
        >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log" >&2; fail "apt-get install"; }
else
    dpkg -i "$DEB" >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log" >&2; fail "dpkg -i"; }
fi
UNIT=$(dpkg -L "$PKG" | grep -E '/systemd/system/akagate\.service$') || fail "no unit installed"
CONF=/etc/akagate/akagate.toml
for f in /usr/bin/akagate /usr/bin/akactl "$UNIT" "$CONF"; do
    [[ -f $f ]] || fail "$f is not installed"
done
getent passwd akagate >/dev/null || fail "postinst did not create the akagate user"
[[ $(stat -c '%U:%G %a' /var/lib/akagate) == "akagate:akagate 750" ]] ||
    fail "/var/lib/akagate: $(stat -c '%U:%G %a' /var/lib/akagate), want akagate:akagate 750"
[[ $(stat -c '%U %a' /var/lib/akagate/subscribers.toml) == "akagate 600" ]] ||
    fail "the subscriber store is not akagate's, mode 600"
/usr/bin/akagate --check-config "$CONF" >"$WORK/check.log" 2>&1 ||
    { cat "$WORK/check.log" >&2; fail "the installed config does not check"; }
if command -v systemd-analyze >/dev/null; then
    step "systemd-analyze verify $UNIT"
    # Offline verification (systemd need not be running): syntax, ExecStart exists.
    systemd-analyze verify "$UNIT" >"$WORK/verify.log" 2>&1 ||
        { cat "$WORK/verify.log" >&2; fail "systemd-analyze verify"; }
    if grep -i "akagate.service" "$WORK/verify.log"; then fail "the unit has warnings"; fi
fi

# --- run it the way the unit does ----------------------------------------------------------
unit_key() { # the last value of KEY= in the unit's [Service] section
    awk -F= -v k="$1" '/^\[/ {s = ($0 == "[Service]")} s && $1 == k {sub(/^[^=]*=/, ""); v = $0} END {print v}' "$UNIT"
}
EXEC_START=$(unit_key ExecStart)
SVC_USER=$(unit_key User)
SVC_GROUP=$(unit_key Group)
AMBIENT=$(unit_key AmbientCapabilities)
BOUNDING=$(unit_key CapabilityBoundingSet)
MEMLOCK=$(unit_key LimitMEMLOCK)
RUNTIME_DIR=$(unit_key RuntimeDirectory)
RUNTIME_MODE=$(unit_key RuntimeDirectoryMode)
UMASK=$(unit_key UMask)
[[ -n $EXEC_START && -n $SVC_USER && -n $RUNTIME_DIR ]] || fail "the unit lacks ExecStart, User or RuntimeDirectory"
read -ra EXEC_ARGV <<<"$EXEC_START"
[[ -x ${EXEC_ARGV[0]} ]] || fail "ExecStart names ${EXEC_ARGV[0]}, which is not installed"
# CAP_NET_RAW CAP_IPC_LOCK -> +net_raw,+ipc_lock, setpriv's spelling.
caps() { tr ' ' '\n' <<<"$1" | sed -n 's/^CAP_\(.*\)/+\L\1/p' | paste -sd, -; }
[[ $MEMLOCK == infinity ]] && MEMLOCK=unlimited

IFACE=$(sed -n 's/^interface *= *"\([^"]*\)".*/\1/p' "$CONF")
[[ -n $IFACE ]] || fail "no [port] interface in $CONF"
step "network namespace $NS with veth $IFACE; $SVC_USER with $(caps "$AMBIENT"), memlock $MEMLOCK"
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add "$IFACE" type veth peer name akgpeer0
ip -n "$NS" link set "$IFACE" up
ip -n "$NS" link set akgpeer0 up
install -d -o "$SVC_USER" -g "${SVC_GROUP:-$SVC_USER}" -m "${RUNTIME_MODE:-0755}" "/run/$RUNTIME_DIR"

# LimitMEMLOCK: set when this machine allows it (a container without CAP_SYS_RESOURCE does
# not; CAP_IPC_LOCK, which the unit grants, bypasses the limit anyway).
limit=(prlimit --memlock="${MEMLOCK:-unlimited}:${MEMLOCK:-unlimited}")
if ! "${limit[@]}" true 2>/dev/null; then
    echo "   (cannot raise RLIMIT_MEMLOCK here: running with $(ulimit -l) KiB and CAP_IPC_LOCK)"
    limit=()
fi
ip netns exec "$NS" "${limit[@]}" setpriv --reuid="$SVC_USER" --regid="${SVC_GROUP:-$SVC_USER}" --init-groups \
    --inh-caps="-all,$(caps "$AMBIENT")" --ambient-caps="-all,$(caps "$AMBIENT")" \
    --bounding-set="-all,$(caps "$BOUNDING")" --no-new-privs \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin AKAGATE_LOG=info \
    sh -c 'umask "$0"; exec "$@"' "${UMASK:-0022}" "${EXEC_ARGV[@]}" >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!

step "akactl stats on the control socket"
stats=
for _ in $(seq 100); do
    kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon exited at start"
    if stats=$(env -u XDG_RUNTIME_DIR -u AKAGATE_SOCKET /usr/bin/akactl stats --json 2>/dev/null); then
        break
    fi
    sleep 0.2
done
[[ -n $stats ]] || fail "akactl stats got no answer in 20 s"
grep -q '"uptime_s"' <<<"$stats" || fail "akactl stats answered without uptime_s: $stats"
[[ $(stat -c %U /run/akagate/akagate.sock) == "$SVC_USER" ]] || fail "the socket is not $SVC_USER's"
[[ $(stat -c %U "/proc/$DAEMON_PID") == "$SVC_USER" ]] || fail "the daemon does not run as $SVC_USER"
metrics=$(ip netns exec "$NS" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9464 &&
    printf "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n" >&3 && cat <&3') ||
    fail "no metrics endpoint"
grep -q '^akagate_' <<<"$metrics" || fail "the metrics endpoint serves no akagate_ series"

step "SIGTERM"
kill -TERM "$DAEMON_PID"
rc=0
wait "$DAEMON_PID" || rc=$?
DAEMON_PID=
[[ $rc == 0 ]] || fail "the daemon exited $rc on SIGTERM"
[[ ! -e /run/akagate/akagate.sock ]] || fail "the control socket was left behind"
[[ -f /var/lib/akagate/subscribers.toml.sqn-state ]] ||
    fail "no SQN state in /var/lib/akagate after a clean stop"

# --- remove and purge ----------------------------------------------------------------------
step "dpkg --remove, then --purge"
dpkg --remove "$PKG" >/dev/null
for f in /usr/bin/akagate /usr/bin/akactl "$UNIT"; do
    [[ ! -e $f ]] || fail "$f is still there after dpkg --remove"
done
[[ -f $CONF ]] || fail "dpkg --remove deleted the conffile"
dpkg --purge "$PKG" >/dev/null
[[ ! -e $CONF && ! -e /var/lib/akagate ]] || fail "dpkg --purge left $CONF or /var/lib/akagate"
if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q ' installed$'; then
    fail "dpkg still lists $PKG"
fi
echo "package test ok: $(basename "$DEB") installs, runs as $SVC_USER, answers akactl, stops, purges"
