# Shared by the benchmarks that run one closed-loop scenario several times: sourced, not run.

# run_scenario TEST PATTERN: runs `cargo test -p e2e --test TEST` once and prints the number
# that the sed expression PATTERN picks out of its output; the log's tail, and a failure, if
# the run fails.
run_scenario() {
  local log
  log=$(cargo test -p e2e --test "$1" --quiet -- --nocapture 2>&1) || {
    echo "$log" | tail -40 >&2
    return 1
  }
  echo "$log" | sed -n "$2"
}

# min_median_max VALUE...: the markdown row `| runs | min | median | max |` of the values, with
# `UNIT` after each figure.
min_median_max() {
  printf '%s\n' "$@" | sort -n | awk -v unit="${UNIT:-}" '
    { v[NR] = $1 }
    END {
      median = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "| %d | %.2f%s | %.2f%s | %.2f%s |", NR, v[1], unit, median, unit, v[NR], unit
    }'
}

# commit_label: the short commit, and whether the tree has uncommitted changes.
commit_label() {
  echo "$(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
}
