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
# in a core namespace of its own, reached over the kernel's sockets on a second interface of
# the daemon's namespace (the access/core split of an SBC), so every REGISTER is
# authenticated by akacore (401 with CK/IK, digest checked against XRES) and every call goes
# UE -> akagate -> akacore -> akagate -> UE. It needs the namespaces (root).
# CORE_TRANSPORT=udp puts the core side on UDP.
#
# NODES=2 (MODE=core only) is the scale-out: two akagate daemons, each in its own namespace
# with its own address (10.0.0.1, 10.0.0.2), on one access link (a bridge) with the UEs, and
# both in front of the one akacore. Half the UEs register through each node, and every call
# goes from a UE of one node to a UE of the other (akabench --more-pcscf); SAs and TCP stay
# on their node, the core holds the registrations and routes by the Path each node added.
# The workers poll adaptively ([cores] idle) so two daemons, akacore and akabench share the
# cores. CALLS defaults to UES then, so calls go both ways.
#
# Override with UES=.. CALLS=.. TRANSPORT=udp ALG=.. EALG=.. IPV6=1 REPORT=file DEREGISTER=0
# LOGS=dir (the daemons' and akacore's logs and the configurations are copied there),
# REREGISTER=1 (after the calls every UE re-registers with new SAs, TS 33.203 7.4),
# KILL9_AT=N (issue 14, namespaces only): once the daemon counts N registrations it is killed
# with SIGKILL and started again on the same files while akabench goes on; the run then
# checks that no UE's USIM saw a stale challenge (a reused SQN), that the SQN state and the
# subscriber file parse, and prints how many registrations were restored and how long the
# restart took (bench/run.sh kill9 runs it with 10,000 UEs over UDP).
# SHARDS=N (namespaces only) runs the daemon with N slowpath shards ([cores] slowpath), in
# either MODE. BACKEND=memory skips the namespaces even as root. The slowpath's CPU time per UE
# (from /proc, so the busy-polling worker does not count) is printed at the end; with CALLS=0
# DEREGISTER=0 it is the CPU time per registration.
set -euo pipefail
cd "$(dirname "$0")/.."

UES=${UES:-1000}
NODES=${NODES:-1}
SHARDS=${SHARDS:-1}
case $SHARDS in
  [1-9] | [1-5][0-9] | 6[0-4]) ;;
  *) echo "demo: SHARDS must be 1 to 64, not '$SHARDS'"; exit 2 ;;
esac
MODE=${MODE:-embedded}
case $MODE in
  embedded | core) ;;
  *) echo "demo: MODE must be embedded or core, not '$MODE'"; exit 2 ;;
esac
case $NODES in
  1) ;;
  2 | 3 | 4)
    if [ "$MODE" != core ]; then
      echo "demo: NODES=$NODES needs MODE=core (the nodes share one IMS core; embedded" \
           "nodes would each keep their own registrations)"
      exit 2
    fi ;;
  *) echo "demo: NODES must be 1 to 4, not '$NODES'"; exit 2 ;;
esac
if [ "$NODES" = 1 ]; then CALLS=${CALLS:-500}; else CALLS=${CALLS:-$UES}; fi
TRANSPORT=${TRANSPORT:-tcp}
ALG=${ALG:-hmac-sha-1-96}
EALG=${EALG:-aes-cbc}
REPORT=${REPORT:-target/akabench-demo.json}
BACKEND=${BACKEND:-}
CORE_TRANSPORT=${CORE_TRANSPORT:-tcp}
DEREGISTER=${DEREGISTER:-1}
# akacore's terminated reg-event NOTIFY after a de-registration is sent this long after the
# 200 OK. It may overtake the 200 inside akagate (two TCP connections); akagate then leaves
# the ending to the relayed REGISTER's answer, so 0 (at once) is the default test of it.
DEREG_NOTIFY_DELAY_MS=${DEREG_NOTIFY_DELAY_MS:-0}

cargo build --release -p akagate -p akagate-tools -p akagate-bench

work=$(mktemp -d)
nodes=$(seq "$NODES")
# Namespaces: A1..An the daemons, B the UEs, L the access bridge (NODES > 1), C the core.
ns_b="akgdemo$$b"
ns_l="akgdemo$$l"
ns_c="akgdemo$$c"
veth_b="akgd$$b"
ns_a() { echo "akgdemo$$a$1"; }
veth_a() { echo "akgd$$a$1"; }
sock() { echo "$work/akagate$1.sock"; }
core_listen=172.16.0.1:5070
daemon_pids=()
core_pid=""
cleanup() {
  for pid in "${daemon_pids[@]}" "$core_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  for i in $nodes; do ip netns del "$(ns_a "$i")" 2>/dev/null || true; done
  for ns in "$ns_b" "$ns_l" "$ns_c"; do ip netns del "$ns" 2>/dev/null || true; done
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

# cpu_report BEFORE AFTER UES NAME: CPU seconds per thread name over the run, and per UE.
cpu_report() {
  local hz
  hz=$(getconf CLK_TCK)
  echo "== $4 CPU time during the run (/proc, $hz ticks/s; $3 UEs; MODE=$MODE CALLS=$CALLS DEREGISTER=$DEREGISTER)"
  LC_ALL=C join -a 2 -e 0 -o 0,1.2,2.2 <(echo "$1") <(echo "$2") |
    awk -v hz="$hz" -v ues="$3" '{ d = ($3 - $2) / hz; if (d > 0)
      printf "   %-16s %8.2f s  %8.1f us per UE\n", $1, d, d * 1e6 / ues }'
}

# quiet_link NS IFACE: no IPv6 (no DAD/RS/MLD frames), full checksums in every frame
# (nothing left CHECKSUM_PARTIAL for the other end), up.
quiet_link() {
  ip netns exec "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=1"
  if command -v ethtool >/dev/null; then
    ip netns exec "$1" ethtool -K "$2" tx off rx off >/dev/null 2>&1 || true
  fi
  ip -n "$1" link set "$2" up
}

# The access link: a veth pair between A1 and B, or, with several nodes, a bridge in L with
# one port per namespace. No addresses on the interfaces, so no kernel answers (or resets)
# the UEs' and the daemons' TCP; AF_PACKET sees all frames. Fails (and we fall back) when
# not permitted.
setup_access() {
  [ "$(id -u)" = 0 ] || { why="not root"; return 1; }
  command -v ip >/dev/null || { why="iproute2 (ip) not installed"; return 1; }
  ip netns add "$ns_b" 2>/dev/null || { why="cannot create network namespaces"; return 1; }
  for i in $nodes; do ip netns add "$(ns_a "$i")"; done
  if [ "$NODES" = 1 ]; then
    ip link add "$(veth_a 1)" netns "$(ns_a 1)" type veth peer name "$veth_b" netns "$ns_b" \
      || { why="cannot create a veth pair"; return 1; }
    quiet_link "$(ns_a 1)" "$(veth_a 1)"
    quiet_link "$ns_b" "$veth_b"
    return 0
  fi
  ip netns add "$ns_l"
  ip -n "$ns_l" link add br0 type bridge stp_state 0 mcast_snooping 0
  ip netns exec "$ns_l" sysctl -qw net.ipv6.conf.br0.disable_ipv6=1
  ip -n "$ns_l" link set br0 up
  ip link add "akgd$$lb" netns "$ns_l" type veth peer name "$veth_b" netns "$ns_b"
  quiet_link "$ns_b" "$veth_b"
  quiet_link "$ns_l" "akgd$$lb"
  ip -n "$ns_l" link set "akgd$$lb" master br0
  for i in $nodes; do
    ip link add "akgd$$l$i" netns "$ns_l" type veth peer name "$(veth_a "$i")" netns "$(ns_a "$i")"
    quiet_link "$(ns_a "$i")" "$(veth_a "$i")"
    quiet_link "$ns_l" "akgd$$l$i"
    ip -n "$ns_l" link set "akgd$$l$i" master br0
  done
}

# The core network (MODE=core): namespace C with akacore on 172.16.0.1 on a bridge, and in
# each daemon's namespace a second interface with 172.16.0.(10+i) for [ims-core] local.
setup_core() {
  ip netns add "$ns_c"
  ip -n "$ns_c" link set lo up
  ip -n "$ns_c" link add core0 type bridge stp_state 0
  ip -n "$ns_c" addr add 172.16.0.1/24 dev core0
  ip -n "$ns_c" link set core0 up
  for i in $nodes; do
    ip link add "akgd$$c$i" netns "$ns_c" type veth peer name "akgd$$k$i" netns "$(ns_a "$i")"
    ip -n "$ns_c" link set "akgd$$c$i" master core0
    ip -n "$ns_c" link set "akgd$$c$i" up
    ip -n "$(ns_a "$i")" addr add "172.16.0.$((10 + i))/24" dev "akgd$$k$i"
    ip -n "$(ns_a "$i")" link set "akgd$$k$i" up
  done
}

# write_config I: node I's configuration (the bench daemon's, akagate_bench::daemon::
# daemon_config, written out so the demo shows the file an operator writes).
write_config() {
  local i=$1 subscribers_section idle=""
  subscribers_section='[subscribers]
file = "subscribers.toml"
'
  if [ "$MODE" = core ]; then
    subscribers_section="[ims-core]
next-hops = [\"sip:$core_listen;transport=$CORE_TRANSPORT\"]
local = \"172.16.0.$((10 + i)):5060\"
trusted = [\"172.16.0.0/24\"]
visited-network-id = \"akagate-demo\"
"
  fi
  if [ "$NODES" != 1 ]; then idle='idle = "adaptive"'; fi
  if [ "$SHARDS" != 1 ]; then
    # SHARDS slowpath shards on the cores the worker leaves (shards may share a core).
    local k list=""
    for ((k = 0; k < SHARDS; k++)); do
      list="$list${list:+, }$(( cores > 1 ? k % (cores - 1) : 0 ))"
    done
    idle="$idle
slowpath = [$list]"
  fi
  cat > "$work/akagate$i.toml" <<EOF
# Generated by scripts/demo.sh: akagate node $i on $(veth_a "$i") in namespace $(ns_a "$i").
[[sip-ports]]
address = "10.0.0.$i"
port = 5060
ims-aka-profile = "demo"

[[sip-ports]]
address = "fd00::$i"
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
interface = "$(veth_a "$i")"

[cores]
workers = [$worker]
$idle

[addresses]
ipv4 = ["10.0.0.$i"]
ipv6 = ["fd00::$i"]

$subscribers_section
[sa-table]
capacity = $(( UES * 8 > 1024 ? UES * 8 : 1024 ))

[control]
socket = "$(sock "$i")"
EOF
}

start_core() {
  echo "demo: proxy mode: the nodes' [ims-core] is akacore on $core_listen ($CORE_TRANSPORT) in $ns_c"
  ip netns exec "$ns_c" ./target/release/akacore --subscribers "$work/subscribers.toml" \
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
}

# start_daemon I: node I in its namespace, waiting until its control socket answers.
start_daemon() {
  local i=$1 pid
  ip netns exec "$(ns_a "$i")" ./target/release/akagate --config "$work/akagate$i.toml" \
    > "$work/akagate$i.log" 2>&1 &
  pid=$!
  daemon_pids+=("$pid")
  for _ in $(seq 100); do
    if ./target/release/akactl stats --socket "$(sock "$i")" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "demo: akagate node $i did not start:"; cat "$work/akagate$i.log"; exit 1
}

# core_check: akacore saw every registration and call (nothing was answered by akagate alone).
core_check() {
  # Datagrams the kernel dropped on the core side, per socket (a full receive buffer): a
  # lost request is sent again by its client transaction (RFC 3261 17.1.1.2), a lost 2xx
  # only by the answering UE (13.3.1.4), which akabench's UEs do not do.
  for i in $nodes; do
    ip netns exec "$(ns_a "$i")" ss -uanm 2>/dev/null | awk -v n="$i" '/^UNCONN/ { a = $4 }
      /skmem/ && match($0, /,d[0-9]+/) { printf "node %s core side UDP %s: %s datagrams dropped\n", n, a, substr($0, RSTART + 2, RLENGTH - 2) }' || true
  done
  kill -TERM "$core_pid"
  wait "$core_pid" || true
  core_pid=""
  echo "== akacore (S-CSCF + HSS) counters"
  tail -n 1 "$work/akacore.log"
  counters=$(tail -n 1 "$work/akacore.log")
  core_count() { echo "$counters" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
  if [ "$(core_count registrations)" != "$UES" ] || [ "$(core_count calls_answered)" -lt "$CALLS" ] \
     || [ "$(core_count auth_failures)" != 0 ] || [ "$(core_count call_failures)" != 0 ]; then
    echo "demo: akacore's counters do not match $UES registrations and $CALLS calls"
    status=1
  fi
}

# node_check I: with several nodes each must have carried its share: the SA sets of the
# UEs that registered through it, and SIP to and from the core.
node_check() {
  local i=$1 json
  json=$(./target/release/akactl stats --json --socket "$(sock "$i")" 2>/dev/null || echo '{}')
  if ! echo "$json" | python3 -c '
import json, sys
n, want = sys.argv[1], int(sys.argv[2])
s = json.load(sys.stdin).get("slowpath", {})
sets, sent, got = s.get("sa_sets_installed", 0), s.get("core_link_sent", 0), s.get("core_link_received", 0)
print(f"demo: node {n}: {sets} SA sets installed (its UEs: {want}), {sent} SIP messages to the core, {got} from it")
sys.exit(0 if sets >= want and sent > 0 and got > 0 else 1)' "$i" "$2"; then
    echo "demo: node $i did not carry its share"
    status=1
  fi
}

# kill9_restart: (KILL9_AT) once node 1 counts KILL9_AT registrations, SIGKILL it and start
# it again on the same files; its new PID goes to $work/akagate1.pid.
kill9_restart() {
  registrations() {
    ./target/release/akactl stats --json --socket "$(sock 1)" 2>/dev/null |
      /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["slowpath"]["registrations"])' \
      2>/dev/null || echo 0
  }
  local waited=0
  while [ "$(registrations)" -lt "$KILL9_AT" ]; do
    sleep 0.02
    waited=$((waited + 1))
    if [ "$waited" -gt 30000 ]; then
      echo "demo: KILL9_AT: $KILL9_AT registrations not reached in 10 minutes"; return 1
    fi
  done
  kill -KILL "${daemon_pids[0]}"
  while kill -0 "${daemon_pids[0]}" 2>/dev/null; do sleep 0.005; done
  local t0
  t0=$(date +%s%N)
  ip netns exec "$(ns_a 1)" ./target/release/akagate --config "$work/akagate1.toml" \
    >> "$work/akagate1.log" 2>&1 &
  echo $! > "$work/akagate1.pid"
  until ./target/release/akactl stats --socket "$(sock 1)" >/dev/null 2>&1; do sleep 0.01; done
  # (A new line first: akabench's progress line has none.)
  printf '\n'
  echo "demo: akagate killed with SIGKILL at $KILL9_AT+ registrations, answering again" \
       "after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  grep "restored" "$work/akagate1.log" | tail -n 1
}

# kill9_check: no USIM saw a stale challenge (a reused SQN), and the subscriber file and the
# SQN state parse with every SQN above 0.
kill9_check() {
  local stale
  stale=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stale_challenges"])' "$REPORT")
  echo "demo: stale challenges seen by the USIMs: $stale"
  [ "$stale" = 0 ] || status=1
  /usr/bin/python3 - "$work/subscribers.toml" "$work/subscribers.toml.sqn-state" "$UES" <<'PY' || status=1
import sys, tomllib
subs = tomllib.load(open(sys.argv[1], "rb"))["subscriber"]
state = tomllib.load(open(sys.argv[2], "rb"))
assert len(subs) == int(sys.argv[3]), len(subs)
assert all(int(v, 16) > 0 for v in state.values())
print("demo: subscriber file (%d) and SQN state (%d IMPIs) parse" % (len(subs), len(state)))
PY
}

if [ -n "${KILL9_AT:-}" ] && { [ "$NODES" != 1 ] || [ "$MODE" != embedded ]; }; then
  echo "demo: KILL9_AT needs MODE=embedded and one node"; exit 2
fi

why=""
if [ "$BACKEND" != memory ] && setup_access; then
  cores=$(nproc)
  worker=$((cores > 1 ? cores - 1 : 0))
  pcscf=10.0.0.1
  more=()
  for i in $nodes; do
    if [ "$i" != 1 ]; then
      if [ -n "${IPV6:-}" ]; then more+=(--more-pcscf "fd00::$i"); else more+=(--more-pcscf "10.0.0.$i"); fi
    fi
  done
  if [ -n "${IPV6:-}" ]; then pcscf=fd00::1; fi
  if [ "$MODE" = core ]; then setup_core; fi
  for i in $nodes; do write_config "$i"; done
  echo "demo: backend af_packet: $NODES akagate node(s) in namespace(s) $(for i in $nodes; do printf '%s ' "$(ns_a "$i")"; done)" \
       "(worker on core $worker), $UES UEs from namespace $ns_b on $veth_b"
  if [ "$MODE" = core ]; then start_core; fi
  for i in $nodes; do start_daemon "$i"; done
  status=0
  declare -A cpu_before
  for i in $nodes; do cpu_before[$i]=$(thread_cpu "${daemon_pids[$((i - 1))]}"); done
  killer=""
  if [ -n "${KILL9_AT:-}" ]; then
    kill9_restart &
    killer=$!
  fi
  ip netns exec "$ns_b" ./target/release/akabench "${bench_args[@]}" \
    --backend af_packet --iface "$veth_b" --pcscf "$pcscf" "${more[@]}" "${extra[@]}" || status=$?
  if [ -n "$killer" ]; then
    # The registrations in flight when the daemon died (at most akabench's concurrency, 64)
    # lost their 401 or 200, and akabench does not retry them: those, and only those, may fail.
    lost=$(/usr/bin/python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); print(r["registration_failures"] if r["call_failures"] == 0 else "x")' "$REPORT" 2>/dev/null || echo x)
    if [ "$status" = 1 ] && [ "$lost" != x ] && [ "$lost" -le 64 ]; then
      echo "demo: $lost registrations in flight at the kill were lost (akabench does not retry them)"
      status=0
    fi
    wait "$killer" || status=1
    # The restarted daemon is no child of this shell.
    daemon_pids[0]=$(cat "$work/akagate1.pid")
    kill9_check
  fi
  for i in $nodes; do
    cpu_after=$(thread_cpu "${daemon_pids[$((i - 1))]}")
    echo "== akagate node $i counters (akactl stats)"
    ./target/release/akactl stats --socket "$(sock "$i")" || true
    cpu_report "${cpu_before[$i]}" "$cpu_after" "$UES" "akagate node $i"
  done
  if [ "$NODES" != 1 ]; then
    # UE k of the first half goes to node k mod n + 1, UE h + k to node (k + 1) mod n + 1
    # (akabench's pcscf_of); count each node's UEs the same way.
    half=$((UES / 2))
    for i in $nodes; do
      mine=0
      for ((u = 0; u < UES; u++)); do
        if ((u < half || half == 0)); then slot=$((u % NODES)); else slot=$(((u - half + 1) % NODES)); fi
        if ((slot == i - 1)); then mine=$((mine + 1)); fi
      done
      node_check "$i" "$mine"
    done
  fi
  if [ -n "$core_pid" ]; then core_check; fi
  for i in $nodes; do
    pid=${daemon_pids[$((i - 1))]}
    kill -TERM "$pid"
    daemon_status=0
    if [ -n "$killer" ] && [ "$i" = 1 ]; then
      # The restarted daemon is no child of this shell: wait for it to go.
      for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
      if kill -0 "$pid" 2>/dev/null; then daemon_status=1; fi
    else
      wait "$pid" || daemon_status=$?
    fi
    daemon_pids[$((i - 1))]=""
    if [ "$daemon_status" != 0 ]; then
      echo "demo: akagate node $i exited with status $daemon_status:"; tail -n 20 "$work/akagate$i.log"
      status=1
    fi
  done
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
