#!/usr/bin/env bash
# A local Redis Cluster for tests and for trying duckspread against a
# cluster: 3 primaries and 3 replicas of Debian 12's redis-server 7.0 on
# loopback, each node in DIR/node-PORT (its redis.conf, nodes.conf, AOF,
# redis.pid and redis.log). Every wait polls with a deadline.
#
#   scripts/redis-cluster.sh start DIR [--base-port P] [--tls] [--acl]
#   scripts/redis-cluster.sh stop DIR [--clean]
#   scripts/redis-cluster.sh status DIR
#   scripts/redis-cluster.sh owner DIR SLOT|--key KEY
#   scripts/redis-cluster.sh kill-primary DIR [--lag-ms MS] SLOT|--key KEY
#   scripts/redis-cluster.sh restart-node DIR PORT
#   scripts/redis-cluster.sh reshard DIR SLOT|--key KEY TO_PORT
#
# `usage` below says what each does and which files DIR holds.
set -euo pipefail

prog=${0##*/}
# Deadlines, in milliseconds.
NODE_UP_MS=10000   # a started redis-server answers PING
CLUSTER_OK_MS=30000 # every node says cluster_state:ok, replicas linked
FAILOVER_MS=30000  # a replica of a killed primary serves its slots
STOP_MS=15000      # SIGTERM -> the process is gone (then SIGKILL)
# What README.md (An external Redis) gives duckspread, and what a cluster
# client needs to read the slot map and follow redirects.
ACL_RULES='resetchannels ~*:request_duck ~*:response_duck ~*:lease ~*:epoch -@all
+ping +xadd +xgroup|create +xreadgroup +xrevrange +xack +xpending +xtrim
+get +set +incr +pexpire +evalsha +eval
+cluster|slots +cluster|shards +cluster|nodes +asking +readonly +role +wait +info'

usage() {
    cat <<EOF
usage: $prog start DIR [--base-port P] [--tls] [--acl]
       $prog stop DIR [--clean]
       $prog status DIR
       $prog owner DIR SLOT|--key KEY
       $prog kill-primary DIR [--lag-ms MS] SLOT|--key KEY
       $prog restart-node DIR PORT
       $prog reshard DIR SLOT|--key KEY TO_PORT

A local Redis Cluster (3 primaries, 3 replicas) of redis-server 7.0 on
127.0.0.1 ports P..P+5 (cluster bus: P+10000..P+10005).

start         creates the cluster in DIR (P: 7000 when 7000..7005 and their
              bus ports are free, else the first free block of six above it)
              and waits until every node says cluster_state:ok with all
              16384 slots served and every replica linked. The last line of
              stdout (also in DIR/url) is duckspread's --redis value:
                redis://127.0.0.1:P,127.0.0.1:P+1,127.0.0.1:P+2
              A DIR that already holds a stopped cluster is started again as
              it was (its ports, options and data).
  --tls       TLS only (port 0, tls-port P, tls-cluster and tls-replication
              yes, client certificates optional) with a throwaway CA:
              rediss:// in the URL, DIR/ca.pem for clients
              (duckspread: --redis-ca DIR/ca.pem; redis-cli: --tls --cacert).
  --acl       an ACL user 'duckspread' with the rules of README.md (An
              external Redis) plus CLUSTER SLOTS|SHARDS|NODES, ASKING,
              READONLY, ROLE, WAIT and INFO; its random password in
              DIR/password and in the URL. The default user stays the
              all-powerful admin, with the random password in
              DIR/admin-password (also masterauth, for the replicas).
stop          SIGTERM to every node (no save), waits until all are gone.
  --clean     then removes what start made in DIR (and DIR if left empty).
status        one line per node from CLUSTER NODES: address, role, slots.
owner         prints the port of the primary that serves SLOT (or KEY's).
kill-primary  kill -9 of the primary serving SLOT (or KEY's slot); prints
              'killed PORT', waits until a replica took over and every live
              node says cluster_state:ok, then prints 'promoted PORT'.
  --lag-ms MS its replicas are stopped (SIGSTOP) and their links closed
              (CLIENT KILL TYPE replica) MS before the kill, and go on
              (SIGCONT) right after it: the promoted one lacks what the
              primary took in those MS.
restart-node  starts a stopped or killed node of DIR again (a killed
              primary comes back as a replica) and waits for cluster_state:ok.
reshard       moves one slot (and its keys) to the primary on TO_PORT with
              CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE and SETSLOT NODE;
              waits until every live node sees the new owner.

Needs redis-server and redis-cli (7.0), and openssl for --tls.
EOF
}

die() {
    echo "$prog: $*" >&2
    exit 1
}

bad_usage() {
    echo "$prog: $*" >&2
    usage >&2
    exit 2
}

now_ms() { date +%s%3N; }

# seconds since $1 (milliseconds), one decimal
since() {
    local ms=$(($(now_ms) - $1))
    printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100))
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 is not installed ($2)"
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# ---------------------------------------------------------------------------
# a cluster's directory: DIR/nodes lists its ports; DIR/ca.pem means TLS,
# DIR/admin-password means the default user has a password

dir=
ports=()
tls_args=()

set_dir() {
    [[ -n $1 ]] || bad_usage "no DIR"
    dir=$1
}

load() {
    [[ -d $dir ]] || die "no directory $dir"
    dir=$(cd "$dir" && pwd)
    [[ -f $dir/nodes ]] || die "no cluster in $dir (no $dir/nodes; made by start)"
    mapfile -t ports <"$dir/nodes"
    [[ ${#ports[@]} -eq 6 ]] || die "$dir/nodes should list 6 ports"
    tls_args=()
    if [[ -f $dir/ca.pem ]]; then
        tls_args=(--tls --cacert "$dir/ca.pem")
    fi
    if [[ -f $dir/admin-password ]]; then
        REDISCLI_AUTH=$(cat "$dir/admin-password")
        export REDISCLI_AUTH
    else
        unset REDISCLI_AUTH
    fi
}

# redis-cli as the admin to the node on port $1; never blocks for long
cli() {
    local port=$1
    shift
    timeout 10 redis-cli -h 127.0.0.1 -p "$port" ${tls_args[@]+"${tls_args[@]}"} \
        --no-auth-warning "$@"
}

pid_of() {
    local f=$dir/node-$1/redis.pid pid
    [[ -f $f ]] || return 1
    pid=$(cat "$f" 2>/dev/null) || return 1
    is_uint "$pid" || return 1
    # the pid is a redis-server still (not a number reused by another process)
    grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

alive() { pid_of "$1" >/dev/null; }

alive_ports() {
    local p
    for p in "${ports[@]}"; do
        if alive "$p"; then echo "$p"; fi
    done
}

# a live node that answers, to ask about the cluster
any_node() {
    local p
    for p in $(alive_ports); do
        if [[ $(cli "$p" PING 2>/dev/null) == PONG ]]; then
            echo "$p"
            return 0
        fi
    done
    die "no node of the cluster in $dir answers (stopped? start it: $0 start $dir)"
}

port_taken() {
    (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

log_tail() {
    local log=$dir/node-$1/redis.log
    if [[ -f $log ]]; then
        echo "--- last lines of $log:" >&2
        tail -n 5 "$log" >&2
    fi
}

# ---------------------------------------------------------------------------
# the cluster's state, from CLUSTER NODES

# "PORT FLAGS" of the primary that serves slot $2, as node $1 sees it
owner_seen_by() {
    cli "$1" CLUSTER NODES 2>/dev/null | awk -v slot="$2" '
        $3 ~ /master/ {
            for (i = 9; i <= NF; i++) {
                if ($i ~ /^\[/) continue   # importing or migrating
                n = split($i, r, "-")
                lo = r[1] + 0
                hi = (n == 2 ? r[2] : r[1]) + 0
                if (slot >= lo && slot <= hi) {
                    a = $2
                    sub(/@.*/, "", a)
                    sub(/.*:/, "", a)
                    print a, $3
                    exit
                }
            }
        }'
}

# the port of the primary serving slot $1: every live node agrees, and it is
# not failing; fails (prints nothing) otherwise
agreed_owner() {
    local p seen first=''
    for p in $(alive_ports); do
        seen=$(owner_seen_by "$p" "$1")
        [[ -n $seen && $seen != *fail* ]] || return 1
        seen=${seen%% *}
        [[ -z $first || $first == "$seen" ]] || return 1
        first=$seen
    done
    [[ -n $first ]] || return 1
    echo "$first"
}

node_ok() {
    local info
    info=$(cli "$1" CLUSTER INFO 2>/dev/null | tr -d '\r') || return 1
    [[ $info == *cluster_state:ok* && $info == *cluster_slots_ok:16384* &&
        $info == *cluster_known_nodes:6* ]]
}

# a replica's link to its primary is up (a primary: nothing to wait for)
replica_linked() {
    local role
    role=$(cli "$1" ROLE 2>/dev/null) || return 1
    case $role in
    master*) return 0 ;;
    slave*) [[ $(sed -n 4p <<<"$role") == connected ]] ;;
    *) return 1 ;;
    esac
}

cluster_ok() {
    local p n=0
    for p in $(alive_ports); do
        node_ok "$p" && replica_linked "$p" || return 1
        n=$((n + 1))
    done
    [[ $n -gt 0 ]]
}

# wait_for MS WHAT CMD...: polls CMD every 0.2 s until it succeeds or MS
# milliseconds have passed (then dies saying WHAT)
wait_for() {
    local ms=$1 what=$2 deadline
    deadline=$(($(now_ms) + ms))
    shift 2
    until "$@"; do
        if [[ $(now_ms) -gt $deadline ]]; then
            die "timed out after $((ms / 1000)) s waiting for $what"
        fi
        sleep 0.2
    done
}

slot_arg() {
    local what=$1 node
    if [[ $what == --key ]]; then
        [[ $# -eq 2 && -n $2 ]] || bad_usage "--key needs one KEY"
        node=$(any_node)
        cli "$node" CLUSTER KEYSLOT "$2"
        return
    fi
    if ! { [[ $# -eq 1 ]] && is_uint "$what" && [[ $((10#$what)) -le 16383 ]]; }; then
        bad_usage "SLOT must be 0..16383, not '$*'"
    fi
    echo "$((10#$what))"
}

# ---------------------------------------------------------------------------
# start

make_tls() {
    local d=$dir/tls log=$dir/tls/openssl.log
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    mkdir -p "$d"
    {
        openssl req -x509 "${ec[@]}" -keyout "$d/ca.key" -out "$dir/ca.pem" -days 30 \
            -subj '/CN=duckspread test cluster CA' &&
            openssl req "${ec[@]}" -keyout "$d/server.key" -out "$d/server.csr" \
                -subj '/CN=localhost' &&
            # clientAuth too: each node shows this certificate as a client
            # on the cluster bus (which always asks for one) and to its primary
            printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
                'extendedKeyUsage=serverAuth,clientAuth' >"$d/server.ext" &&
            openssl x509 -req -in "$d/server.csr" -CA "$dir/ca.pem" -CAkey "$d/ca.key" \
                -CAserial "$d/ca.srl" -CAcreateserial -days 30 -out "$d/server.crt" \
                -extfile "$d/server.ext"
    } >"$log" 2>&1 || {
        cat "$log" >&2
        die "openssl could not make the certificates"
    }
    chmod 644 "$dir/ca.pem"
}

random_hex() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

# pick_ports [BASE]: six free ports (and their bus ports) into $ports
pick_ports() {
    local base=$1 tries=1 b p ok
    if [[ -z $base ]]; then
        base=7000
        tries=100
    fi
    for ((b = base; b < base + 10 * tries; b += 10)); do
        ok=1
        for ((p = b; p < b + 6; p++)); do
            if port_taken "$p" || port_taken $((p + 10000)); then
                ok=
                [[ $tries -eq 1 ]] && die "port $p or its cluster bus port $((p + 10000)) is taken (another --base-port?)"
                break
            fi
        done
        if [[ -n $ok ]]; then
            ports=()
            for ((p = b; p < b + 6; p++)); do ports+=("$p"); done
            return 0
        fi
    done
    die "no six free ports (and bus ports) from $base to $((base + 10 * tries))"
}

write_conf() {
    local port=$1 tls=$2 acl=$3 d=$dir/node-$1
    mkdir -p "$d"
    {
        echo "# made by $prog start: a node of the local test cluster"
        echo "bind 127.0.0.1"
        if [[ -n $tls ]]; then
            echo "port 0"
            echo "tls-port $port"
            echo "tls-cert-file $dir/tls/server.crt"
            echo "tls-key-file $dir/tls/server.key"
            echo "tls-ca-cert-file $dir/ca.pem"
            echo "tls-auth-clients optional"
            echo "tls-cluster yes"
            echo "tls-replication yes"
        else
            echo "port $port"
        fi
        echo "daemonize yes"
        echo "pidfile $d/redis.pid"
        echo "logfile $d/redis.log"
        echo "dir $d"
        echo "cluster-enabled yes"
        echo "cluster-config-file nodes.conf"
        # a failover in a few seconds; a replica always may take over
        echo "cluster-node-timeout 2000"
        echo "cluster-replica-validity-factor 0"
        echo "appendonly yes"
        echo "appendfsync always"
        # a replica syncs at once (the default waits 5 s for others to join)
        echo "repl-diskless-sync-delay 0"
        echo 'save ""'
        echo "shutdown-on-sigterm nosave now"
        if [[ -n $acl ]]; then
            echo "requirepass $(cat "$dir/admin-password")"
            echo "masterauth $(cat "$dir/admin-password")"
            echo "user duckspread on >$(cat "$dir/password") $(tr '\n' ' ' <<<"$ACL_RULES")"
        fi
    } >"$d/redis.conf"
}

launch() {
    local p out
    declare -A log_at # each log's size before the start: older lines are no news
    for p in "$@"; do
        alive "$p" && die "node $p is running already (pid $(pid_of "$p"))"
        ! port_taken "$p" || die "port $p is taken by another process"
    done
    for p in "$@"; do
        rm -f "$dir/node-$p/redis.pid"
        log_at[$p]=$(stat -c %s "$dir/node-$p/redis.log" 2>/dev/null || echo 0)
        out=$(redis-server "$dir/node-$p/redis.conf" 2>&1) || {
            echo "$out" >&2
            die "redis-server $dir/node-$p/redis.conf did not start"
        }
    done
    for p in "$@"; do
        wait_for "$NODE_UP_MS" "node $p to answer PING (see $dir/node-$p/redis.log)" node_up "$p"
    done
}

# the node answers; dies at once when it logged that it gave up (a daemon
# that fails after the fork, e.g. a port taken or a bad certificate, exits
# with nothing but its log to say so)
node_up() {
    [[ $(cli "$1" PING 2>/dev/null) == PONG ]] && return 0
    if ! alive "$1" && tail -c +$((log_at[$1] + 1)) "$dir/node-$1/redis.log" 2>/dev/null |
        grep -qE 'Failed|Could not|Fatal|FATAL|Aborting|aborting'; then
        log_tail "$1"
        die "node $1 did not start"
    fi
    return 1
}

seed_url() {
    local scheme=redis user=''
    [[ -f $dir/ca.pem ]] && scheme=rediss
    [[ -f $dir/password ]] && user="duckspread:$(cat "$dir/password")@"
    echo "$scheme://${user}127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
}

# a start that fails leaves no node running (its files stay, for the logs)
start_failed() {
    local rc=$?
    [[ $rc -ne 0 ]] || return 0
    stop_nodes
    echo "$prog: start failed: its nodes are stopped; the files stay in $dir" \
        "(logs: $dir/node-*/redis.log; remove them: $0 stop $dir --clean)" >&2
    exit "$rc"
}

cmd_start() {
    local base='' tls='' acl='' p t0
    set_dir "${1-}"
    shift || true
    while [[ $# -gt 0 ]]; do
        case $1 in
        --base-port)
            if ! { [[ $# -ge 2 ]] && is_uint "$2" && [[ $2 -ge 1024 && $2 -le 55530 ]]; }; then
                bad_usage "--base-port needs a port 1024..55530 (the bus ports are +10000)"
            fi
            base=$2
            shift 2
            ;;
        --tls) tls=1 && shift ;;
        --acl) acl=1 && shift ;;
        *) bad_usage "start: unknown argument '$1'" ;;
        esac
    done
    need redis-server "Debian: apt-get install redis-server"
    need redis-cli "Debian: apt-get install redis-tools"
    [[ -z $tls ]] || need openssl "Debian: apt-get install openssl"
    t0=$(now_ms)
    umask 077
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ -f $dir/nodes ]]; then
        [[ -z $base$tls$acl ]] ||
            die "$dir holds a cluster already: '$0 start $dir' alone starts it again as it was, or '$0 stop $dir --clean' first"
        load
        echo "starting the cluster in $dir again: ports ${ports[*]}"
        trap start_failed EXIT
        launch "${ports[@]}"
    else
        pick_ports "$base"
        echo "ports ${ports[*]} (cluster bus $((ports[0] + 10000))..$((ports[5] + 10000)))"
        [[ -z $tls ]] || make_tls
        if [[ -n $acl ]]; then
            random_hex >"$dir/password"
            random_hex >"$dir/admin-password"
        fi
        for p in "${ports[@]}"; do write_conf "$p" "$tls" "$acl"; done
        printf '%s\n' "${ports[@]}" >"$dir/nodes"
        load
        trap start_failed EXIT
        launch "${ports[@]}"
        local addrs=()
        for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
        # the first three become the primaries, each of the others a replica
        timeout 60 redis-cli ${tls_args[@]+"${tls_args[@]}"} --no-auth-warning --cluster create \
            "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 || {
            cat "$dir/create.log" >&2
            die "redis-cli --cluster create failed"
        }
    fi
    wait_for "$CLUSTER_OK_MS" "cluster_state:ok on every node" cluster_ok
    trap - EXIT
    seed_url >"$dir/url"
    echo "cluster ok in $(since "$t0") (see: $0 status $dir; stop: $0 stop $dir)"
    [[ -z $tls ]] || echo "TLS: clients trust $dir/ca.pem (duckspread: --redis-ca $dir/ca.pem)"
    [[ -z $acl && ! -f $dir/password ]] ||
        echo "ACL: user duckspread, password in $dir/password; admin: the default user, password in $dir/admin-password"
    cat "$dir/url"
}

# ---------------------------------------------------------------------------
# stop, status

# SIGTERM to every running node (shutdown-on-sigterm: no save, no waiting
# for replicas), then waits until all are gone; SIGKILL past STOP_MS
stop_nodes() {
    local p pid deadline left
    for p in "${ports[@]}"; do
        if pid=$(pid_of "$p"); then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    deadline=$(($(now_ms) + STOP_MS))
    while left=$(alive_ports) && [[ -n $left ]]; do
        if [[ $(now_ms) -gt $deadline ]]; then
            for p in $left; do
                echo "$prog: node $p still running after $((STOP_MS / 1000)) s: SIGKILL" >&2
                kill -KILL "$(pid_of "$p")" 2>/dev/null || true
            done
        fi
        sleep 0.1
    done
}

cmd_stop() {
    local clean='' p
    set_dir "${1-}"
    shift || true
    while [[ $# -gt 0 ]]; do
        case $1 in
        --clean) clean=1 && shift ;;
        *) bad_usage "stop: unknown argument '$1'" ;;
        esac
    done
    load
    stop_nodes
    echo "stopped ${ports[*]}"
    if [[ -n $clean ]]; then
        for p in "${ports[@]}"; do rm -rf "${dir:?}/node-$p"; done
        rm -rf "$dir/tls"
        rm -f "$dir"/{nodes,url,password,admin-password,ca.pem,create.log}
        rmdir "$dir" 2>/dev/null || true
        echo "removed the cluster's files in $dir"
    fi
}

cmd_status() {
    local node
    set_dir "${1-}"
    [[ $# -eq 1 ]] || bad_usage "status takes DIR only"
    load
    node=$(any_node)
    cli "$node" CLUSTER NODES | awk '
        {
            a = $2
            sub(/@.*/, "", a)
            addr[NR] = a
            id[$1] = a
            sub(/.*:/, "", a)
            port[NR] = a + 0
            flags[NR] = $3
            primary[NR] = $4
            s = ""
            for (i = 9; i <= NF; i++) s = s (s == "" ? "" : ",") $i
            slots[NR] = s
        }
        END {
            for (n = 1; n <= NR; n++) {
                f = flags[n]
                gsub(/myself,?/, "", f)
                role = (f ~ /master/) ? "primary" : "replica"
                gsub(/(master|slave),?/, "", f)
                sub(/,$/, "", f)
                line = addr[n] " " role
                if (role == "primary") line = line " " (slots[n] == "" ? "no slots" : slots[n])
                else line = line " of " id[primary[n]]
                if (f != "" && f != "noflags") line = line " (" f ")"
                out[port[n]] = line
            }
            for (p = 0; p < 65536; p++) if (p in out) print out[p]
        }'
}

cmd_owner() {
    local slot p
    set_dir "${1-}"
    shift || true
    [[ $# -ge 1 ]] || bad_usage "owner needs a SLOT or --key KEY"
    load
    slot=$(slot_arg "$@")
    p=$(agreed_owner "$slot") || die "the live nodes do not agree on a healthy primary of slot $slot"
    echo "$p"
}

# ---------------------------------------------------------------------------
# kill-primary, restart-node, reshard

cmd_kill_primary() {
    local slot old pid t0 new lag=0 r rpids=()
    set_dir "${1-}"
    shift || true
    if [[ ${1-} == --lag-ms ]]; then
        { [[ $# -ge 2 ]] && is_uint "$2" && [[ $2 -le 1500 ]]; } ||
            bad_usage "--lag-ms needs milliseconds up to 1500 (below cluster-node-timeout)"
        lag=$2
        shift 2
    fi
    [[ $# -ge 1 ]] || bad_usage "kill-primary needs a SLOT or --key KEY"
    load
    slot=$(slot_arg "$@")
    old=$(agreed_owner "$slot") || die "slot $slot has no healthy primary to kill"
    pid=$(pid_of "$old") || die "the primary of slot $slot, port $old, is not a node of $dir"
    if [[ $lag -gt 0 ]]; then
        # its replicas stopped (SIGSTOP) for lag ms before the kill: they
        # miss what the primary took meanwhile
        for r in $(cli "$old" CLUSTER REPLICAS "$(id_of "$old")" | sed -n 's/^[^ ]* [^ ]*:\([0-9]*\)@.*/\1/p'); do
            rpids+=("$(pid_of "$r")") || die "replica $r of $old has no pid"
        done
        [[ ${#rpids[@]} -gt 0 ]] || die "the primary $old has no replica to stop"
        kill -STOP "${rpids[@]}"
        # the links closed too: what was sent stays readable in the replica's
        # socket, what comes after stays in the primary's backlog only
        cli "$old" CLIENT KILL TYPE replica >/dev/null
        sleep "$(printf '%d.%03d' $((lag / 1000)) $((lag % 1000)))"
    fi
    t0=$(now_ms)
    kill -KILL "$pid"
    [[ ${#rpids[@]} -eq 0 ]] || kill -CONT "${rpids[@]}"
    echo "killed $old (the primary of slot $slot, pid $pid${rpids[*]:+; its replicas stopped ${lag} ms before})"
    # the new owner: a live node other than the killed one, seen by all
    promoted() {
        ! alive "$old" && new=$(agreed_owner "$slot") && [[ $new != "$old" ]] && cluster_ok
    }
    wait_for "$FAILOVER_MS" "a replica of $old to take over slot $slot" promoted
    echo "promoted $new (the primary of slot $slot; cluster ok $(since "$t0") after the kill)"
}

cmd_restart_node() {
    local port t0
    set_dir "${1-}"
    if ! { [[ $# -eq 2 ]] && is_uint "$2"; }; then
        bad_usage "restart-node needs DIR and a PORT"
    fi
    port=$2
    load
    [[ -f $dir/node-$port/redis.conf ]] || die "port $port is not a node of $dir (${ports[*]})"
    t0=$(now_ms)
    launch "$port"
    wait_for "$CLUSTER_OK_MS" "cluster_state:ok with $port back" cluster_ok
    echo "restarted $port: $(cli "$port" ROLE | head -n 1) (cluster ok in $(since "$t0"))"
}

id_of() { cli "$1" CLUSTER MYID; }

# cli_ok PORT ARGS...: the reply must be OK
cli_ok() {
    local r
    r=$(cli "$@" 2>&1) || true
    [[ $r == OK ]] || die "$* on node $1: $r"
}

cmd_reshard() {
    local slot to from from_id to_id p t0 moved=0 keys r
    set_dir "${1-}"
    shift || true
    [[ $# -ge 2 ]] || bad_usage "reshard needs a SLOT (or --key KEY) and a TO_PORT"
    to=${*: -1}
    is_uint "$to" || bad_usage "TO_PORT must be a port, not '$to'"
    load
    slot=$(slot_arg "${@:1:$#-1}")
    [[ " ${ports[*]} " == *" $to "* ]] || die "port $to is not a node of $dir (${ports[*]})"
    alive "$to" || die "node $to is not running"
    [[ $(cli "$to" ROLE | head -n 1) == master ]] || die "node $to is a replica; slots go to primaries"
    from=$(agreed_owner "$slot") || die "slot $slot has no healthy primary to move it from"
    if [[ $from == "$to" ]]; then
        echo "slot $slot is on $to already"
        return 0
    fi
    t0=$(now_ms)
    from_id=$(id_of "$from")
    to_id=$(id_of "$to")
    cli_ok "$to" CLUSTER SETSLOT "$slot" IMPORTING "$from_id"
    cli_ok "$from" CLUSTER SETSLOT "$slot" MIGRATING "$to_id"
    local auth=()
    [[ -z ${REDISCLI_AUTH-} ]] || auth=(AUTH "$REDISCLI_AUTH")
    while true; do
        mapfile -t keys < <(cli "$from" CLUSTER GETKEYSINSLOT "$slot" 100)
        [[ ${#keys[@]} -gt 0 && -n ${keys[0]} ]] || break
        r=$(cli "$from" MIGRATE 127.0.0.1 "$to" "" 0 10000 ${auth[@]+"${auth[@]}"} KEYS "${keys[@]}" 2>&1) ||
            true
        [[ $r == OK || $r == NOKEY ]] || die "MIGRATE of slot $slot's keys from $from to $to: $r"
        moved=$((moved + ${#keys[@]}))
    done
    # the new owner first, then the old one, then the other primaries
    cli_ok "$to" CLUSTER SETSLOT "$slot" NODE "$to_id"
    cli_ok "$from" CLUSTER SETSLOT "$slot" NODE "$to_id"
    for p in $(alive_ports); do
        if [[ $p != "$to" && $p != "$from" && $(cli "$p" ROLE | head -n 1) == master ]]; then
            cli_ok "$p" CLUSTER SETSLOT "$slot" NODE "$to_id"
        fi
    done
    moved_to() { [[ $(agreed_owner "$slot") == "$to" ]] && cluster_ok; }
    wait_for "$CLUSTER_OK_MS" "every node to see slot $slot on $to" moved_to
    echo "moved slot $slot from $from to $to ($moved keys) in $(since "$t0")"
}

# ---------------------------------------------------------------------------

[[ $# -ge 1 ]] || bad_usage "no command"
cmd=$1
shift
case $cmd in
-h | --help | help)
    usage
    exit 0
    ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
owner) cmd_owner "$@" ;;
kill-primary) cmd_kill_primary "$@" ;;
restart-node) cmd_restart_node "$@" ;;
reshard) cmd_reshard "$@" ;;
*) bad_usage "unknown command '$cmd'" ;;
esac
