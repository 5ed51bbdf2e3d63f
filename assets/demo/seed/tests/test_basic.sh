test_upper() {
  assert_eq "HELLO" "$(echo hello | "$TEXTKIT" upper)" || return 1
}

test_lower() {
  assert_eq "hello" "$(echo HeLLo | "$TEXTKIT" lower)" || return 1
}

test_unknown_command_fails() {
  if "$TEXTKIT" nope >/dev/null 2>&1; then
    echo "    expected a non-zero exit"
    return 1
  fi
}
