#!/usr/bin/env bash
# make cluster-smoke: scripts/redis-cluster.sh against real redis-servers,
# twice: a plain cluster, then one with --tls --acl. Each run starts a
# cluster in a temporary directory and talks to it as a client would, from
# the seed URL that start prints (its scheme, user, password and hosts):
# redis-cli -c writes a key into three slots served by three different
# primaries, each write confirmed by WAIT 1 (a replica has it), and reads
# it back through another seed; kill-primary of the first key's slot, the
# key still there; restart-node of the killed one, a replica now; reshard
# of the second key's slot to the third primary, the key served there and
# MOVED from the old one; stop --clean. With --acl the duckspread user may
# read the slot map and is refused a key outside its patterns.
# Prints each step's time; exits non-zero on the first failure, keeping
# the cluster's directory (its logs) for a look.
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=$(pwd)/scripts/redis-cluster.sh
work=$(mktemp -d "${TMPDIR:-/tmp}/cluster-smoke.XXXXXX")
d=''
mode=setup

finish() {
    local rc=$?
    if [[ -n $d && -f $d/nodes ]]; then "$cluster" stop "$d" >/dev/null 2>&1 || true; fi
    if [[ $rc -eq 0 ]]; then
        rm -rf "$work"
    else
        echo "cluster-smoke: FAILED; the cluster's files and logs stay in $work" >&2
    fi
}
trap finish EXIT

fail() {
    echo "cluster-smoke: $mode: $*" >&2
    exit 1
}

now_ms() { date +%s%3N; }
secs() {
    local ms=$1
    printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100))
}

# what start printed, read as a client reads it: scheme, user, password and
# the seeds (host:port)
url_scheme='' url_user='' url_pass=''
seeds=()
parse_url() {
    local rest=${1#*://} userinfo=''
    url_scheme=${1%%://*}
    if [[ $rest == *@* ]]; then
        userinfo=${rest%%@*}
        rest=${rest#*@}
    fi
    url_user=${userinfo%%:*}
    url_pass=${userinfo#*:}
    IFS=, read -ra seeds <<<"$rest"
}

# redis-cli -c as the URL's user, to seed host:port $1; MOVED notes dropped
ucli() {
    local host=${1%:*} port=${1##*:} args=()
    shift
    [[ $url_scheme == rediss ]] && args+=(--tls --cacert "$d/ca.pem")
    [[ -n $url_user ]] && args+=(--user "$url_user" --pass "$url_pass")
    timeout 10 redis-cli -h "$host" -p "$port" "${args[@]}" --no-auth-warning -c "$@" |
        grep -v '^-> Redirected'
}

# redis-cli as the admin to port $1, no redirects followed
acli() {
    local port=$1 args=()
    shift
    [[ -f $d/ca.pem ]] && args+=(--tls --cacert "$d/ca.pem")
    [[ -f $d/admin-password ]] && args+=(--pass "$(cat "$d/admin-password")")
    timeout 10 redis-cli -h 127.0.0.1 -p "$port" "${args[@]}" --no-auth-warning "$@"
}

# a seed whose port is not $1
other_seed() {
    local s
    for s in "${seeds[@]}"; do
        [[ ${s##*:} == "$1" ]] || {
            echo "$s"
            return
        }
    done
}

run() {
    mode=$1
    shift
    d=$work/$mode
    local t out url t_start t_fail t_restart t_reshard t_stop
    t=$(now_ms)
    out=$("$cluster" start "$d" "$@") || fail "start failed"
    t_start=$(($(now_ms) - t))
    url=$(tail -n 1 <<<"$out")
    echo "$mode: $url"
    [[ $url == "$(cat "$d/url")" ]] || fail "the last line of start ($url) is not $d/url"
    parse_url "$url"
    [[ ${#seeds[@]} -eq 3 ]] || fail "the URL has ${#seeds[@]} seeds, not 3"
    if [[ " $* " == *" --tls "* ]]; then
        [[ $url_scheme == rediss && -f $d/ca.pem ]] || fail "--tls: no rediss:// or no ca.pem"
    else
        [[ $url_scheme == redis ]] || fail "the URL's scheme is $url_scheme"
    fi
    if [[ " $* " == *" --acl "* ]]; then
        [[ $url_user == duckspread && $url_pass == "$(cat "$d/password")" ]] ||
            fail "--acl: the URL's user is not duckspread with $d/password"
    fi

    # three keys (the names of duckspread's lease keys) on three primaries
    local keys=() owners=() vals=() i=0 k o r
    while [[ ${#keys[@]} -lt 3 ]]; do
        k="{smoke$i}:lease"
        o=$("$cluster" owner "$d" --key "$k")
        if [[ " ${owners[*]} " != *" $o "* ]]; then
            keys+=("$k")
            owners+=("$o")
        fi
        i=$((i + 1))
        [[ $i -lt 100 ]] || fail "no three keys on three primaries in 100 tries"
    done
    for i in 0 1 2; do
        vals+=("v$i-$RANDOM")
        r=$(printf 'SET %s %s\nWAIT 1 5000\n' "${keys[i]}" "${vals[i]}" | ucli "${seeds[0]}" | tr '\n' ' ')
        [[ $r == "OK 1 " ]] || fail "SET ${keys[i]} + WAIT 1 through ${seeds[0]}: $r"
        r=$(ucli "${seeds[2]}" GET "${keys[i]}")
        [[ $r == "${vals[i]}" ]] || fail "GET ${keys[i]} through ${seeds[2]}: '$r'"
    done
    echo "$mode: wrote ${keys[*]} on primaries ${owners[*]} (WAIT 1: on a replica each)"

    if [[ -n $url_user ]]; then
        for k in "CLUSTER SLOTS" "CLUSTER SHARDS" "CLUSTER NODES" "READONLY" "ROLE" "INFO replication"; do
            # shellcheck disable=SC2086 # the command's words
            r=$(ucli "${seeds[0]}" $k 2>&1)
            [[ -n $r && $r != *NOPERM* && $r != *ERR* ]] || fail "the duckspread user's $k: $r"
        done
        r=$(ucli "${seeds[0]}" SET smoke:other x 2>&1)
        [[ $r == *NOPERM* ]] || fail "the duckspread user may SET smoke:other: $r"
    fi

    # a failover: the first key's primary killed
    local killed promoted seed
    t=$(now_ms)
    out=$("$cluster" kill-primary "$d" --key "${keys[0]}") || fail "kill-primary failed"
    t_fail=$(($(now_ms) - t))
    killed=$(awk '$1 == "killed" { print $2 }' <<<"$out")
    promoted=$(awk '$1 == "promoted" { print $2 }' <<<"$out")
    [[ $killed == "${owners[0]}" ]] || fail "kill-primary killed '$killed', not ${owners[0]}: $out"
    [[ -n $promoted && $promoted != "$killed" ]] || fail "kill-primary: no new primary: $out"
    [[ $("$cluster" owner "$d" --key "${keys[0]}") == "$promoted" ]] || fail "owner is not $promoted"
    seed=$(other_seed "$killed")
    r=$(ucli "$seed" GET "${keys[0]}")
    [[ $r == "${vals[0]}" ]] || fail "after the failover, GET ${keys[0]} through $seed: '$r'"
    r=$(acli "$promoted" GET "${keys[0]}")
    [[ $r == "${vals[0]}" ]] || fail "after the failover, GET ${keys[0]} on $promoted: '$r'"
    echo "$mode: killed $killed, promoted $promoted, ${keys[0]} still there"

    t=$(now_ms)
    "$cluster" restart-node "$d" "$killed" >/dev/null || fail "restart-node $killed failed"
    t_restart=$(($(now_ms) - t))
    [[ $(acli "$killed" ROLE | head -n 1) == slave ]] || fail "$killed is back, but not as a replica"

    # the second key's slot to the third key's primary
    local slot from=${owners[1]} to=${owners[2]}
    slot=$(acli "$to" CLUSTER KEYSLOT "${keys[1]}")
    t=$(now_ms)
    "$cluster" reshard "$d" "$slot" "$to" >/dev/null || fail "reshard $slot $to failed"
    t_reshard=$(($(now_ms) - t))
    [[ $("$cluster" owner "$d" "$slot") == "$to" ]] || fail "slot $slot is not on $to after reshard"
    r=$(acli "$to" GET "${keys[1]}")
    [[ $r == "${vals[1]}" ]] || fail "GET ${keys[1]} on $to after reshard: '$r'"
    r=$(acli "$from" GET "${keys[1]}" 2>&1)
    [[ $r == "MOVED $slot 127.0.0.1:$to" ]] || fail "GET ${keys[1]} on $from after reshard: '$r'"
    r=$(ucli "$seed" GET "${keys[1]}")
    [[ $r == "${vals[1]}" ]] || fail "GET ${keys[1]} through $seed after reshard: '$r'"
    echo "$mode: slot $slot moved from $from to $to, ${keys[1]} served there"

    t=$(now_ms)
    "$cluster" stop "$d" --clean >/dev/null || fail "stop failed"
    t_stop=$(($(now_ms) - t))
    [[ ! -e $d ]] || fail "stop --clean left $d"
    for seed in "${seeds[@]}"; do
        if (: <>"/dev/tcp/${seed%:*}/${seed##*:}") 2>/dev/null; then fail "$seed answers after stop"; fi
    done
    echo "$mode: ok: start $(secs "$t_start"), kill-primary to promoted $(secs "$t_fail")," \
        "restart-node $(secs "$t_restart"), reshard $(secs "$t_reshard"), stop $(secs "$t_stop")"
}

command -v redis-server >/dev/null || fail "redis-server is not installed"
t0=$(now_ms)
run plain
run tls-acl --tls --acl
echo "cluster-smoke: ok in $(secs $(($(now_ms) - t0)))"
