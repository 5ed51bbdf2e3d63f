#!/usr/bin/env bash
# Measure memofab against a real small local model (Qwen2.5-Coder via llama.cpp,
# a local-llm kit (llama.cpp's server from PyPI + Qwen2.5-Coder GGUFs, with its serve.sh) in
# $LOCAL_LLM_DIR, default ~/.cache/local-llm), with memofab's defaults
# after `init`. Each run: a fresh tiny repository (README.md of 3 lines, tests/run.sh
# exiting 0), `memofab init --llamacpp-url`, `memofab doctor`, then
# `memofab run --headless --auto-approve` with the requirement below, under a timeout.
#
# usage: measure.sh MEMOFAB_BIN OUT_DIR [RUNS=3] [MODEL=1.5b|0.5b] [TEMPLATE=fenced|stock] [PORT=8089]
#   e.g. bash docs/measure-local-model.sh target/release/memofab /tmp/m-fenced 3 1.5b fenced
# Starts the model server itself and stops it at the end (its log: OUT_DIR/serve.log).
# Per run, in OUT_DIR/<n>/: init.out, config.toml (as init wrote it), doctor.out,
# events.jsonl (the run's stdout), stderr.txt, readme-main.txt, roles.txt, uptime.txt.
# OUT_DIR/summary.md gets one row per run: wall time, exit code, merged?, CORRECT?
# (README.md = its 3 lines + the new one), the plan reviewer's verdicts, time/calls/tokens
# per role, and the load before and after. Run it on a quiet machine for timings: with
# other builds on the 2 cores, generation slows 3-10x (note the load column).
set -u
BIN=$(readlink -f "${1:?usage: measure.sh MEMOFAB_BIN OUT_DIR [RUNS] [MODEL] [TEMPLATE] [PORT]}")
OUT=$(mkdir -p "${2:?OUT_DIR}" && readlink -f "$2")
RUNS=${3:-3}
MODEL=${4:-1.5b}
TEMPLATE=${5:-fenced}
PORT=${6:-8089}
TIMEOUT=${MEASURE_TIMEOUT:-600}
LLM=${LOCAL_LLM_DIR:-$HOME/.cache/local-llm}
REQ="Add the line 'Hello from memofab.' at the end of README.md."

if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then
  echo "something already answers on port $PORT: stop it, or pass another PORT"; exit 1
fi
if [ "$TEMPLATE" = stock ]; then export LLM_CHAT_TEMPLATE_FILE=""; fi
"$LLM/serve.sh" "$PORT" "$MODEL" > "$OUT/serve.log" 2>&1 &
SERVER=$!
stop_server() {
  kill "$SERVER" 2>/dev/null
  for _ in $(seq 1 20); do kill -0 "$SERVER" 2>/dev/null || return; sleep 0.5; done
  kill -9 "$SERVER" 2>/dev/null
}
trap stop_server EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break
  sleep 1
done
curl -sf "http://127.0.0.1:$PORT/health" > /dev/null || { echo "the server did not start: see $OUT/serve.log"; exit 1; }

[ -f "$OUT/summary.md" ] || {
  echo "| run | model | template | wall s | rc | merged | correct | plan reviews | planner | plan reviewer | coder | reviewer | load before → after |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} > "$OUT/summary.md"

for n in $(seq 1 "$RUNS"); do
  D="$OUT/$MODEL-$TEMPLATE-$n"
  rm -rf "$D"; mkdir -p "$D/repo/tests"
  (
    cd "$D/repo" || exit 1
    git init -q -b main; git config user.email t@example.com; git config user.name tester
    printf '# Tiny repo\n\nA test repository for memofab with a local model.\n' > README.md
    printf '#!/bin/sh\nexit 0\n' > tests/run.sh
    git add -A; git commit -q -m init
    "$BIN" init --llamacpp-url "http://127.0.0.1:$PORT" > ../init.out 2>&1; echo "init rc=$?" >> ../init.out
    cp .memofab/config.toml ../config.toml
    "$BIN" doctor > ../doctor.out 2>&1; echo "doctor rc=$?" >> ../doctor.out
    LOAD0=$(cut -d' ' -f1 /proc/loadavg)
    S=$(date +%s.%N)
    timeout "$TIMEOUT" "$BIN" run --requirement-text "$REQ" --headless --auto-approve > ../events.jsonl 2> ../stderr.txt
    RC=$?
    E=$(date +%s.%N)
    LOAD1=$(cut -d' ' -f1 /proc/loadavg)
    echo "$LOAD0 -> $LOAD1" > ../uptime.txt
    git show main:README.md > ../readme-main.txt 2>&1
    python3 - "$D" "$n" "$MODEL" "$TEMPLATE" "$RC" "$S" "$E" "$LOAD0" "$LOAD1" >> "$OUT/summary.md" <<'PY'
import collections, json, sys
d, n, model, template, rc, s, e, l0, l1 = sys.argv[1:]
events = []
for line in open(f"{d}/events.jsonl", errors="replace"):
    try:
        events.append(json.loads(line))
    except ValueError:
        pass
roles = collections.OrderedDict((r, [0.0, 0, 0, 0, 0]) for r in ("planner", "plan_reviewer", "coder", "reviewer"))
agents, started = {}, {}
for ev in events:
    t, a = ev.get("type"), ev.get("agent")
    if t == "agent_started":
        agents[a] = ev.get("role"); started[a] = ev["at_ms"]
    elif a in agents and agents[a] in roles:
        r = roles[agents[a]]
        if t == "tool_called": r[1] += 1
        elif t == "tokens_used": r[2] += ev["usage"]["input"]; r[3] += ev["usage"]["output"]
        elif t == "agent_finished": r[0] += (ev["at_ms"] - started[a]) / 1000; r[4] += 1
reviews = ["yes" if ev.get("approved") else "no" for ev in events if ev.get("type") == "plan_reviewed"]
merged = sum(1 for ev in events if ev.get("type") == "task_state_changed" and ev.get("to") == "merged")
original = ["# Tiny repo", "", "A test repository for memofab with a local model."]
readme = open(f"{d}/readme-main.txt", errors="replace").read().split("\n")
rest = [l for l in readme[3:] if l.strip()]
correct = readme[:3] == original and rest == ["Hello from memofab."]
cell = lambda r: f"{r[0]:.0f}s/{r[1]}c/{r[2]}→{r[3]}" + (f" ({r[4]} agents)" if r[4] > 1 else "")
wall = float(e) - float(s)
print(f"| {n} | {model} | {template} | {wall:.0f} | {rc} | {merged} | {'YES' if correct else 'no'} | {','.join(reviews) or '-'} | "
      + " | ".join(cell(r) for r in roles.values()) + f" | {l0} → {l1} |")
with open(f"{d}/roles.txt", "w") as out:
    for a, role in agents.items():
        out.write(f"{role} {a}\n")
PY
  )
  tail -1 "$OUT/summary.md"
done
