#!/bin/sh
# Test runner: loads the library and every tests/test_*.sh, then runs each
# function whose name starts with test_, printing PASS or FAIL for each.
ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
TEXTKIT="$ROOT/bin/textkit"

assert_eq() {
  if [ "$1" = "$2" ]; then
    return 0
  fi
  echo "    expected: $1"
  echo "    actual:   $2"
  return 1
}

for lib in "$ROOT"/lib/*.sh; do
  . "$lib"
done

ok=0
failing=0
for file in "$ROOT"/tests/test_*.sh; do
  [ -f "$file" ] || continue
  . "$file"
  for name in $(sed -n 's/^\(test_[A-Za-z0-9_]*\)[[:space:]]*()[[:space:]]*{.*$/\1/p' "$file"); do
    if "$name"; then
      echo "PASS $name"
      ok=$((ok + 1))
    else
      echo "FAIL $name"
      failing=$((failing + 1))
    fi
  done
done

echo "textkit tests: $ok ok, $failing failing"
[ "$failing" -eq 0 ]
