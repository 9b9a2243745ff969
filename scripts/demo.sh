#!/usr/bin/env bash
# make demo: 1,000 simulated UEs register with akagate through IMS-AKA and ESP (TCP,
# hmac-sha-1-96 + aes-cbc), place 500 calls between them and de-register; the summary is
# printed and the exit status is 0 only if every registration and call succeeded.
#
# As root (and where `ip netns` works) the real daemon binary runs in network namespace A on
# one end of a veth pair with `backend = "af_packet"`, and `akabench --backend af_packet`
# drives the UEs from namespace B on the other end. Otherwise the daemon is started
# in-process by akabench on the in-memory backend. The script says which one it uses.
#
# MODE=core runs akagate in proxy mode (issue 9): no subscribers in akagate; its [ims-core]
# points at akacore (bench/src/bin/akacore.rs, an S-CSCF + HSS over the same subscriber file)
# on loopback in the daemon's namespace, so every REGISTER is authenticated by akacore (401
# with CK/IK, digest checked against XRES) and every call goes UE -> akagate -> akacore ->
# akagate -> UE. It needs the namespaces (root). CORE_TRANSPORT=udp puts the core side on UDP.
#
# Override with UES=.. CALLS=.. TRANSPORT=udp ALG=.. EALG=.. IPV6=1 REPORT=file DEREGISTER=0
# LOGS=dir (the daemon's and akacore's logs and the configuration are copied there),
# REREGISTER=1 (after the calls every UE re-registers with new SAs, TS 33.203 7.4),
# KILL9_AT=N (issue 14, namespaces only): once the daemon counts N registrations it is killed
# with SIGKILL and started again on the same files while akabench goes on; the run then
# checks that no UE's USIM saw a stale challenge (a reused SQN), that the SQN state and the
# subscriber file parse, and prints how many registrations were restored and how long the
# restart took (bench/run.sh kill9 runs it with 10,000 UEs over UDP).
# BACKEND=memory skips the namespaces even as root. The slowpath's CPU time per UE
# (from /proc, so the busy-polling worker does not count) is printed at the end; with CALLS=0
# DEREGISTER=0 it is the CPU time per registration.
set -euo pipefail
cd "$(dirname "$0")/.."

UES=${UES:-1000}
CALLS=${CALLS:-500}
TRANSPORT=${TRANSPORT:-tcp}
ALG=${ALG:-hmac-sha-1-96}
EALG=${EALG:-aes-cbc}
REPORT=${REPORT:-target/akabench-demo.json}
BACKEND=${BACKEND:-}
MODE=${MODE:-embedded}
CORE_TRANSPORT=${CORE_TRANSPORT:-tcp}
DEREGISTER=${DEREGISTER:-1}
# akacore's terminated reg-event NOTIFY after a de-registration is sent this long after the
# 200 OK. It may overtake the 200 inside akagate (two TCP connections); akagate then leaves
# the ending to the relayed REGISTER's answer, so 0 (at once) is the default test of it.
DEREG_NOTIFY_DELAY_MS=${DEREG_NOTIFY_DELAY_MS:-0}
case $MODE in
  embedded | core) ;;
  *) echo "demo: MODE must be embedded or core, not '$MODE'"; exit 2 ;;
esac

cargo build --release -p akagate -p akagate-tools -p akagate-bench

work=$(mktemp -d)
ns_a="akgdemo$$a"
ns_b="akgdemo$$b"
veth_a="akgd$$a"
veth_b="akgd$$b"
daemon_pid=""
core_pid=""
cleanup() {
  for pid in "$daemon_pid" "$core_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  ip netns del "$ns_a" 2>/dev/null || true
  ip netns del "$ns_b" 2>/dev/null || true
  if [ -n "${LOGS:-}" ]; then mkdir -p "$LOGS" && cp "$work"/*.log "$work"/*.toml "$LOGS"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

./target/release/akactl subscribers --count "$UES" --out "$work/subscribers.toml"

extra=()
if [ -n "${IPV6:-}" ]; then extra+=(--ipv6); fi
if [ "$DEREGISTER" != 0 ]; then extra+=(--deregister); fi
if [ -n "${REREGISTER:-}" ]; then extra+=(--reregister); fi
bench_args=(--subscribers "$work/subscribers.toml" --ues "$UES" --calls "$CALLS"
  --transport "$TRANSPORT" --alg "$ALG" --ealg "$EALG" --report "$REPORT")

# thread_cpu PID: "name ticks" per thread name of process PID (utime + stime, /proc/PID/task).
thread_cpu() {
  local f
  for f in /proc/"$1"/task/*/stat; do
    # The name is field 2 in parentheses (it may hold spaces); utime/stime follow it as the
    # 12th and 13th fields after the closing parenthesis.
    sed -E 's/^[0-9]+ \((.*)\) (.*)$/\1|\2/' "$f" 2>/dev/null || true # a thread may end meanwhile
  done | awk -F'|' '{ split($2, a, " "); t[$1] += a[12] + a[13] } END { for (n in t) print n, t[n] }' | LC_ALL=C sort
}

# cpu_report BEFORE AFTER UES: CPU seconds per thread name over the run, and per UE.
cpu_report() {
  local hz
  hz=$(getconf CLK_TCK)
  echo "== akagate CPU time during the run (/proc, $hz ticks/s; $3 UEs; MODE=$MODE CALLS=$CALLS DEREGISTER=$DEREGISTER)"
  LC_ALL=C join -a 2 -e 0 -o 0,1.2,2.2 <(echo "$1") <(echo "$2") |
    awk -v hz="$hz" -v ues="$3" '{ d = ($3 - $2) / hz; if (d > 0)
      printf "   %-16s %8.2f s  %8.1f us per UE\n", $1, d, d * 1e6 / ues }'
}

# Namespaces and a veth pair between them; fails (and we fall back) when not permitted.
setup_veth() {
  [ "$(id -u)" = 0 ] || { why="not root"; return 1; }
  command -v ip >/dev/null || { why="iproute2 (ip) not installed"; return 1; }
  ip netns add "$ns_a" 2>/dev/null && ip netns add "$ns_b" 2>/dev/null \
    || { why="cannot create network namespaces"; return 1; }
  ip link add "$veth_a" netns "$ns_a" type veth peer name "$veth_b" netns "$ns_b" \
    || { why="cannot create a veth pair"; return 1; }
  for pair in "$ns_a $veth_a" "$ns_b $veth_b"; do
    set -- $pair
    # No addresses on the interfaces, so neither kernel answers (or resets) the UEs' and
    # the daemon's TCP; no IPv6 on them, so no DAD/RS/MLD frames; AF_PACKET sees all frames.
    ip netns exec "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=1"
    # Full checksums in every frame (nothing left CHECKSUM_PARTIAL for the other end).
    if command -v ethtool >/dev/null; then
      ip netns exec "$1" ethtool -K "$2" tx off rx off >/dev/null 2>&1 || true
    fi
    ip -n "$1" link set "$2" up
  done
}

why=""
if [ "$BACKEND" != memory ] && setup_veth; then
  cores=$(nproc)
  worker=$((cores > 1 ? cores - 1 : 0))
  pcscf=10.0.0.1
  if [ -n "${IPV6:-}" ]; then pcscf=fd00::1; fi
  subscribers_section='[subscribers]
file = "subscribers.toml"
'
  core_listen=127.0.0.1:5070
  if [ "$MODE" = core ]; then
    # The core side uses the kernel's sockets on an address the fast path does not own:
    # loopback of the daemon's namespace, akacore next to it.
    subscribers_section="[ims-core]
next-hops = [\"sip:$core_listen;transport=$CORE_TRANSPORT\"]
local = \"127.0.0.1:5060\"
trusted = [\"127.0.0.0/8\"]
visited-network-id = \"akagate-demo\"
"
    ip -n "$ns_a" link set lo up
  fi
  # The bench daemon's configuration (akagate_bench::daemon::daemon_config, built with
  # akagate::config::ConfigTemplate), written out so the demo shows the file an operator writes.
  cat > "$work/akagate.toml" <<EOF
# Generated by scripts/demo.sh: akagate on $veth_a in namespace $ns_a.
[[sip-ports]]
address = "10.0.0.1"
port = 5060
ims-aka-profile = "demo"

[[sip-ports]]
address = "fd00::1"
port = 5060
ims-aka-profile = "demo"

[[ims-aka-profile]]
name = "demo"
protected-client-port = 5100
protected-server-port = 6100
encr-alg-list = ["aes-cbc", "aes-gcm", "des-ede3-cbc", "null"]
auth-alg-list = ["hmac-sha-1-96", "hmac-md5-96", "aes-gmac"]

[port]
backend = "af_packet"
interface = "$veth_a"

[cores]
workers = [$worker]

[addresses]
ipv4 = ["10.0.0.1"]
ipv6 = ["fd00::1"]

$subscribers_section
[sa-table]
capacity = $(( UES * 8 > 1024 ? UES * 8 : 1024 ))

[control]
socket = "$work/akagate.sock"
EOF
  echo "demo: backend af_packet: akagate in namespace $ns_a on $veth_a (worker on core $worker)," \
       "$UES UEs from namespace $ns_b on $veth_b"
  if [ "$MODE" = core ]; then
    echo "demo: proxy mode: akagate's [ims-core] is akacore on $core_listen ($CORE_TRANSPORT) in $ns_a"
    ip netns exec "$ns_a" ./target/release/akacore --subscribers "$work/subscribers.toml" \
      --listen "$core_listen" --transport "$CORE_TRANSPORT" \
      --dereg-notify-delay-ms "$DEREG_NOTIFY_DELAY_MS" > "$work/akacore.log" 2>&1 &
    core_pid=$!
    for _ in $(seq 50); do
      if grep -q listening "$work/akacore.log" 2>/dev/null || ! kill -0 "$core_pid" 2>/dev/null; then
        break
      fi
      sleep 0.1
    done
    if ! kill -0 "$core_pid" 2>/dev/null; then
      echo "demo: akacore did not start:"; cat "$work/akacore.log"; exit 1
    fi
  fi
  ip netns exec "$ns_a" ./target/release/akagate --config "$work/akagate.toml" \
    > "$work/akagate.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 100); do
    if ./target/release/akactl stats --socket "$work/akagate.sock" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$daemon_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if ! ./target/release/akactl stats --socket "$work/akagate.sock" >/dev/null 2>&1; then
    echo "demo: akagate did not start:"; cat "$work/akagate.log"; exit 1
  fi
  status=0
  cpu_before=$(thread_cpu "$daemon_pid")
  killer=""
  if [ -n "${KILL9_AT:-}" ]; then
    (
      registrations() {
        ./target/release/akactl stats --json --socket "$work/akagate.sock" 2>/dev/null |
          /usr/bin/python3 -c 'import json,sys; d = json.load(sys.stdin); print(d.get("stats", d)["slowpath"]["registrations"])' \
          2>/dev/null || echo 0
      }
      while [ "$(registrations)" -lt "$KILL9_AT" ]; do sleep 0.02; done
      kill -KILL "$daemon_pid"
      while kill -0 "$daemon_pid" 2>/dev/null; do sleep 0.005; done
      t0=$(date +%s%N)
      ip netns exec "$ns_a" ./target/release/akagate --config "$work/akagate.toml" \
        >> "$work/akagate.log" 2>&1 &
      echo $! > "$work/akagate.pid"
      until ./target/release/akactl stats --socket "$work/akagate.sock" >/dev/null 2>&1; do
        sleep 0.01
      done
      echo "demo: akagate killed with SIGKILL at $KILL9_AT+ registrations, answering again" \
           "after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
      grep "restored" "$work/akagate.log" | tail -n 1
    ) &
    killer=$!
  fi
  ip netns exec "$ns_b" ./target/release/akabench "${bench_args[@]}" \
    --backend af_packet --iface "$veth_b" --pcscf "$pcscf" "${extra[@]}" || status=$?
  if [ -n "$killer" ]; then
    wait "$killer" || status=1
    daemon_pid=$(cat "$work/akagate.pid")
    # The registrations in flight at the kill (akabench's window of 64) may time out; every
    # other one must succeed.
    failed=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["registration_failures"])' "$REPORT")
    echo "demo: registrations lost to the kill: $failed (at most the 64 in flight)"
    if [ "$failed" -le 64 ]; then status=0; else status=1; fi
    stale=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stale_challenges"])' "$REPORT")
    echo "demo: stale challenges seen by the USIMs: $stale"
    [ "$stale" = 0 ] || status=1
    # The files are whole: the subscribers and the SQN state parse, every SQN is above 0.
    /usr/bin/python3 - "$work/subscribers.toml" "$work/subscribers.toml.sqn-state" "$UES" <<'PY' || status=1
import sys, tomllib
subs = tomllib.load(open(sys.argv[1], "rb"))["subscriber"]
state = tomllib.load(open(sys.argv[2], "rb"))
assert len(subs) == int(sys.argv[3]), len(subs)
assert all(int(v, 16) > 0 for v in state.values())
print("demo: subscriber file (%d) and SQN state (%d IMPIs) parse" % (len(subs), len(state)))
PY
  fi
  cpu_after=$(thread_cpu "$daemon_pid")
  echo "== akagate counters (akactl stats)"
  ./target/release/akactl stats --socket "$work/akagate.sock" || true
  cpu_report "$cpu_before" "$cpu_after" "$UES"
  if [ -n "$core_pid" ]; then
    # Datagrams the kernel dropped on the core side, per socket (a full receive buffer): a
    # lost request is sent again by its client transaction (RFC 3261 17.1.1.2), a lost 2xx
    # only by the answering UE (13.3.1.4), which akabench's UEs do not do.
    ip netns exec "$ns_a" ss -uanm 2>/dev/null | awk '/^UNCONN/ { a = $4 }
      /skmem/ && match($0, /,d[0-9]+/) { printf "core side UDP %s: %s datagrams dropped\n", a, substr($0, RSTART + 2, RLENGTH - 2) }' || true
    kill -TERM "$core_pid"
    wait "$core_pid" || true
    core_pid=""
    echo "== akacore (S-CSCF + HSS) counters"
    tail -n 1 "$work/akacore.log"
    # The core saw every registration and call (nothing was answered by akagate alone).
    counters=$(tail -n 1 "$work/akacore.log")
    core_count() { echo "$counters" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
    if [ "$(core_count registrations)" != "$UES" ] || [ "$(core_count calls_answered)" -lt "$CALLS" ] \
       || [ "$(core_count auth_failures)" != 0 ] || [ "$(core_count call_failures)" != 0 ]; then
      echo "demo: akacore's counters do not match $UES registrations and $CALLS calls"
      status=1
    fi
  fi
  kill -TERM "$daemon_pid"
  daemon_status=0
  if [ -n "$killer" ]; then
    # The restarted daemon is no child of this shell: wait for it to go.
    for _ in $(seq 300); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$daemon_pid" 2>/dev/null; then daemon_status=1; fi
  else
    wait "$daemon_pid" || daemon_status=$?
  fi
  daemon_pid=""
  if [ "$daemon_status" != 0 ]; then
    echo "demo: akagate exited with status $daemon_status:"; tail -n 20 "$work/akagate.log"
    status=1
  fi
else
  if [ "$BACKEND" = memory ]; then why="BACKEND=memory"; fi
  if [ "$MODE" = core ]; then
    echo "demo: MODE=core runs the real daemon next to akacore in network namespaces: $why"
    exit 2
  fi
  echo "demo: backend memory ($why): akabench starts the akagate daemon in-process on the" \
       "in-memory pair"
  status=0
  ./target/release/akabench "${bench_args[@]}" "${extra[@]}" || status=$?
fi
if [ "$status" = 0 ]; then echo "demo: every registration and call succeeded"; else
  echo "demo: FAILED (status $status)"; fi
exit "$status"
