# shellcheck shell=bash
# Scenario table of bench/fanout.sh (sourced, not run). One line per
# scenario: NAME|BROKERS|VARIANT|GENERATOR ARGUMENTS|DESCRIPTION
#   BROKERS  "all" (uvmq and mosquitto) or "uvmq" (uvmq only)
#   VARIANT  "pinned": broker on CPU 0, uvmq with --threads 1;
#            "t2": uvmq with --threads 2 and no taskset on the broker
# The generator always gets -H/-p/-d/-w/--broker-pid/--label on top.
# docs/benchmarks.md explains what each scenario measures.

# Prints the table; F2_RATE (msgs/s, default 20) sets F2's publish rate.
scenario_table() {
    local f2_rate=${F2_RATE:-20}
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
EOF
}
