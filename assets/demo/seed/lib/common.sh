# Shared helpers for textkit commands. Each reads standard input.

tk_upper() {
  tr '[:lower:]' '[:upper:]'
}

tk_lower() {
  tr '[:upper:]' '[:lower:]'
}
