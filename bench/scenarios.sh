# shellcheck shell=bash
# Scenario table of bench/fanout.sh and bench/connect.sh (sourced, not
# run). One line per scenario: NAME|BROKERS|VARIANT|GENERATOR ARGUMENTS|DESCRIPTION
#   BROKERS  "all" (uvmq and mosquitto) or "uvmq" (uvmq only)
#   VARIANT  "pinned": broker on CPU 0, uvmq with --threads 1;
#            "t2": uvmq with --threads 2 and no taskset on the broker;
#            "t2pin": uvmq with --threads 2, both loops and the thread pool
#            that hashes passwords pinned to CPU 0
# The generator always gets -H/-p/-d/-w/--broker-pid/--label on top. A
# scenario's broker settings beyond the common ones come from
# scenario_uvmq_keys and scenario_mosquitto_lines below.
# docs/benchmarks.md explains what each scenario measures.

# Prints the table; F2_RATE (msgs/s, default 20) sets F2's publish rate,
# CONNECT_USERS (100) the users of C7 and CA, CONNECT_PASSWORD theirs and
# CONNECT_CONNS (50) the CONNECTs in flight of the C scenarios.
scenario_table() {
    local f2_rate=${F2_RATE:-20} users=${CONNECT_USERS:-100}
    local pass=${CONNECT_PASSWORD:-bench-secret} conns=${CONNECT_CONNS:-50}
    cat <<EOF
F1|all|pinned|-m fanout -P 1 -s 1000 -q 0 -S 64 -r 0 -W 64|fanout 1 -> 1000 subs, QoS 0, 64 B, max rate
F2|all|pinned|-m fanout -P 1 -s 1000 -q 0 -S 64 -r $f2_rate -W 64|fanout 1 -> 1000 subs, QoS 0, $f2_rate msg/s ($((f2_rate * 1000)) deliveries/s)
F3q0|all|pinned|-m many -P 100 -s 100 -t 100 -q 0 -S 64 -r 0 -W 64|100 pubs -> 100 subs over 100 topics, QoS 0, max rate
F3q1|all|pinned|-m many -P 100 -s 100 -t 100 -q 1 -S 64 -r 0 -W 64|100 pubs -> 100 subs over 100 topics, QoS 1, max rate
F4|all|pinned|-m many -P 10 -s 1 -t 1 -q 1 -S 64 -r 0 -W 64|fan-in 10 pubs -> 1 sub, QoS 1, max rate
F5|all|pinned|-m idle -c 10000|10000 idle connections: broker RSS per connection
F6|all|pinned|-m wildcard -P 10 -s 10000 -q 0 -S 64 -r 0 -W 64|10000 subs on bench/<i>/+, 10 pubs spread over them, QoS 0
F7|all|pinned|-m fanout -P 1 -s 5000 -q 0 -S 64 -r 0 -W 64|fanout 1 -> 5000 subs, QoS 0, max rate
F3t2|uvmq|t2|-m many -P 100 -s 100 -t 100 -q 0 -S 64 -r 0 -W 64|F3q0 with uvmq --threads 2, broker not pinned
F1acl|uvmq|pinned|-m fanout -P 1 -s 1000 -q 0 -S 64 -r 0 -W 64|F1 with an ACL file: every delivery is checked (anonymous clients may read and write bench/#)
C7|all|t2pin|-m connect -c $conns --users $users --user-prefix u --password $pass|CONNECT storm, PBKDF2-SHA512 (\$7\$) users, no cache: every CONNECT hashes
C7w|uvmq|t2pin|-m connect -c $conns --user u0 --password $pass|CONNECT storm, one PBKDF2 user, cache on: reconnects of known credentials
CA|uvmq|t2pin|-m connect -c $conns --users $users --user-prefix u --password $pass|CONNECT storm, argon2id users (46 MiB each), no cache
CAw|uvmq|t2pin|-m connect -c $conns --user u0 --password $pass|CONNECT storm, one argon2id user, cache on
C0|all|t2pin|-m connect -c $conns|CONNECT storm, anonymous: no password file
EOF
}

# Scenarios that need the password files of bench/connect.sh (AUTH_DIR).
scenario_needs_passwords() {
    case $1 in C7|C7w|CA|CAw) return 0 ;; *) return 1 ;; esac
}

# Prints uvmq's config-file members for scenario NAME beyond the common
# ones (JSON, without braces; empty for none). AUTH_DIR holds the password
# files (pbkdf2.txt, argon2id.txt), ACL the ACL file of F1acl.
scenario_uvmq_keys() {
    local pw=${AUTH_DIR:-}/pbkdf2.txt pa=${AUTH_DIR:-}/argon2id.txt
    case $1 in
    C7) printf '"password_file": "%s", "allow_anonymous": false, "auth_cache_size": 0' "$pw" ;;
    C7w) printf '"password_file": "%s", "allow_anonymous": false, "auth_cache_size": 1024' "$pw" ;;
    CA) printf '"password_file": "%s", "allow_anonymous": false, "auth_cache_size": 0' "$pa" ;;
    CAw) printf '"password_file": "%s", "allow_anonymous": false, "auth_cache_size": 1024' "$pa" ;;
    F1acl) printf '"acl_file": "%s", "allow_anonymous": true' "${ACL:-}" ;;
    esac
}

# Prints mosquitto.conf lines for scenario NAME beyond the common ones.
scenario_mosquitto_lines() {
    case $1 in
    C7|C7w) printf 'allow_anonymous false\npassword_file %s/pbkdf2.txt\n' "${AUTH_DIR:-}" ;;
    esac
}

# Writes F1acl's ACL file to $1. Lines before the first "user" apply to
# anonymous clients, which the generator's are; a user block and a pattern
# follow so that the file is not a single line.
write_acl_file() {
    cat >"$1" <<EOF
# F1acl (bench/fanout.sh): the anonymous generator may read and write bench/#
topic readwrite bench/#
user u0
topic readwrite bench/#
pattern read clients/%c/#
EOF
}
