#!/usr/bin/env bash
# Builds every fuzz target and runs each for a short while from its seed corpus
# (fuzz/corpus/<target>/): a smoke test that the targets build, that the seeds and what
# libFuzzer finds from them in a few seconds crash nothing. Not a fuzzing campaign: for that
# run `cargo fuzz run <target>` (see fuzz/README.md).
#
#   fuzz/smoke.sh [SECONDS_PER_TARGET]      default 20 (or $FUZZ_SECONDS)
#
# Builds with plain cargo and the instrumentation flags `cargo fuzz build -s none -a` passes,
# so it needs neither cargo-fuzz nor a nightly toolchain (no sanitizer: the code under test is
# safe Rust, and SQLCipher/OpenSSL are not what is fuzzed). New inputs go to a temporary
# folder, never into the committed corpus. A crash's input is kept in
# target/fuzz-artifacts/ and printed (base64), and the script fails.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
secs="${1:-${FUZZ_SECONDS:-20}}"
targets=(aws_key_arn key_ids key_policy data_api_find data_api_update)

dict_for() {
  case "$1" in
    key_policy) echo "$here/dict/key_policy.dict" ;;
    data_api_*) echo "$here/dict/data_api.dict" ;;
    *) echo "" ;;
  esac
}

triple="$(rustc -vV | sed -n 's/^host: //p')"
flags=(
  -Cpasses=sancov-module
  -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
  -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares
  -Cllvm-args=-sanitizer-coverage-stack-depth
  -Cllvm-args=-simplifycfg-branch-fold-threshold=0
  "--cfg fuzzing"
  -Cdebug-assertions
  -Coverflow-checks
  # cargo-fuzz uses 1 for the fastest binaries; 16 builds several times faster, which is
  # what a smoke run wants.
  -Ccodegen-units=16
)
echo "fuzz: building ${#targets[@]} targets ($triple)"
start=$(date +%s)
# --target keeps the instrumentation flags off build scripts, as cargo-fuzz does.
RUSTFLAGS="${flags[*]}" cargo build -q --manifest-path "$here/Cargo.toml" --target "$triple" \
  --release --locked --bins
echo "fuzz: built in $(( $(date +%s) - start ))s"
bin="$here/target/$triple/release"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
artifacts="$root/target/fuzz-artifacts"
mkdir -p "$artifacts"
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  dict="$(dict_for "$t")"
  args=("$work/$t" "$here/corpus/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="$artifacts/$t-")
  [ -n "$dict" ] && args+=(-dict="$dict")
  # The store-backed targets make their temporary files under TMPDIR: keep them in $work.
  if TMPDIR="$work" "$bin/$t" "${args[@]}" >"$work/$t.log" 2>&1; then
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -n 1)"
    cov="$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -n 1)"
    echo "fuzz: $t: ${runs:-?} runs in ${secs}s, ${cov:-cov: ?}, no crash"
  else
    failed=1
    echo "fuzz: $t FAILED; the end of its log:"
    tail -n 40 "$work/$t.log"
    for a in "$artifacts/$t-"*; do
      [ -f "$a" ] || continue
      echo "fuzz: crashing input $a (base64): $(base64 -w0 "$a")"
    done
  fi
done
echo "fuzz: done in $(( $(date +%s) - start ))s"
exit "$failed"
