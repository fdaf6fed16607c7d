#!/usr/bin/env bash
# Long fuzz runs: each cargo-fuzz target in fuzz/ for N seconds (default 600), one after another
# (libFuzzer on the nightly toolchain, no sanitizer, debug assertions on). Installs cargo-fuzz if missing.
#
#   scripts/fuzz.sh [seconds] [target...]
#
# Seeds are fuzz/corpus/<target>/ (committed); what a run learns goes to fuzz/work/<target>/ and its log
# to fuzz/work/<target>.log (both ignored by git); a crash goes to fuzz/artifacts/<target>/. Minimise one
# with `cargo +nightly fuzz tmin -s none <target> <file>`, fix it, and commit the input under
# fuzz/regressions/<target>/ (the stable test suite replays it). Targets whose invariant waits on a fix in
# another branch run only when named. Build parallelism: FUZZ_BUILD_JOBS (default 1). Each target also
# aborts on any single allocation above its bound (fuzz/src/lib.rs), reported as a crash.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-600}"
shift || true
# Waiting on issue 8 fixes: proxy_identity_next_hop (row 1), proxy_audit_secrets (row 12).
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(proxy_path proxy_identity proxy_identity_next_hop proxy_audit_secrets tunnel_dial_header tunnel_session v3_bodies)
fi

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: needs the nightly toolchain: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

export CARGO_BUILD_JOBS="${FUZZ_BUILD_JOBS:-1}"
summary=()
failed=0
for target in "${targets[@]}"; do
    mkdir -p "work/$target"
    dict=()
    [ -f "dict/$target.dict" ] && dict=("-dict=dict/$target.dict")
    echo "=== $target: ${seconds}s"
    status=ok
    if ! cargo +nightly fuzz run -s none -a "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=60 -rss_limit_mb=2048 \
        -print_final_stats=1 "${dict[@]}" 2>&1 | tee "work/$target.log"; then
        status=CRASH
        failed=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "work/$target.log" | tail -1 | grep -o '[0-9]*$' || true)
    took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "work/$target.log" | tail -1 | grep -o 'in [0-9]*' | grep -o '[0-9]*' || true)
    summary+=("$target: $status, ${runs:-?} executions in ${took:-?} s")
done

echo "=== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
