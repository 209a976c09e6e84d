# bench/certs.bash - sourced by the benchmark scripts that need TLS
# (bench/tls.sh, bench/h2.sh): test certificates made with the openssl CLI.

# make_certs DIR: a CA (DIR/ca.crt) and a server certificate for
# 127.0.0.1 and localhost (DIR/server.crt, DIR/server.key), EC P-256,
# valid two days. Returns non-zero when openssl fails.
make_certs() {
    local dir=$1 ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${ec[@]}" -keyout "$dir/ca.key" -out "$dir/ca.crt" -days 2 \
        -subj "/CN=uvmq bench CA" 2>/dev/null &&
    openssl req "${ec[@]}" -keyout "$dir/server.key" -out "$dir/server.csr" \
        -subj "/CN=localhost" 2>/dev/null &&
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/san.ext" &&
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -out "$dir/server.crt" -days 2 -extfile "$dir/san.ext" 2>/dev/null
}
