#!/usr/bin/env bash
# The NUX journey on the flagship example, on this machine: ingest the handbook, validate the
# workbook, measure the baseline, tune it on a small budget, pin the best trial, measure again,
# export it for production, serve the exported config on a local Ray and ask it three questions.
#
# `make demo` installs .venv first; this script installs nothing. It works on a copy of the
# example under build/demo/rag_qa (the pin step edits the notebook), keeps that copy's .nux/
# (vector store, stage cache, Optuna study) between runs, and writes the export to
# build/deploy/rag_qa.
#
# Knobs: NUX_DEMO_TRIALS (default 8), NUX_DEMO_TUNE_S (tuning time budget, default 240). The
# served app listens where the exported serve_config.yaml says (port 8000).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
NUX="$VENV/bin/nux"
PY="$VENV/bin/python"
EXAMPLE="$ROOT/examples/rag_qa"
WORK="$ROOT/build/demo/rag_qa"
DEPLOY="$ROOT/build/deploy/rag_qa"
LOGS="$ROOT/build/demo/logs"
NB="$WORK/rag_qa.ipynb"
TRIALS="${NUX_DEMO_TRIALS:-8}"
TUNE_S="${NUX_DEMO_TUNE_S:-240}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
unset RAY_ADDRESS

STEP=0
START=$(date +%s)
SERVE_PID=""
NOTES=()

step() {
  STEP=$((STEP + 1))
  printf '\n\033[1;36m[%d/10] %s\033[0m  (%ss elapsed)\n' "$STEP" "$1" "$(( $(date +%s) - START ))"
}
note() { NOTES+=("$1"); printf '  %s\n' "$1"; }

# Evaluate the workbook on its bank into $LOGS/<label>.json and print a one-line summary.
evaluate() {
  "$NUX" eval "$NB" --no-cases --concurrency 2 --json > "$LOGS/$1.json" || true
  "$PY" - "$LOGS/$1.json" "$1" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print(f"  {sys.argv[2]}: pass rate {s['pass_rate']:.0%}, p95 {s['latency_ms']['p95']:.0f} ms, "
      f"cost/request ${s['cost_per_request']:.6f}, acceptance {'PASS' if s['passed'] else 'FAIL'}")
EOF
}

cleanup() {
  if [[ -n "$SERVE_PID" ]] && kill -0 "$SERVE_PID" 2>/dev/null; then
    kill -INT -- "-$SERVE_PID" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$SERVE_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if [[ ! -x "$NUX" ]]; then
  echo "no NUX in $VENV: run \`make demo\` (it installs .venv first)" >&2
  exit 1
fi
mkdir -p "$WORK" "$LOGS"

step "Prepare a working copy of examples/rag_qa in build/demo/rag_qa"
# Fresh sources every run; the copy's .nux/ (store, cache, study) is kept.
rm -rf "$WORK/corpus" "$WORK/prompts"
cp -R "$EXAMPLE/corpus" "$EXAMPLE/prompts" "$WORK/"
cp "$EXAMPLE/rag_qa.ipynb" "$EXAMPLE/ingest.ipynb" "$EXAMPLE/cases.jsonl" "$WORK/"
echo "  $(ls "$WORK/corpus" | wc -l | tr -d ' ') handbook documents, $(wc -l < "$WORK/cases.jsonl" | tr -d ' ') test questions"

step "Ingest the handbook into Qdrant (local mode, MiniLM embeddings)"
"$NUX" run "$WORK/ingest.ipynb" --json > "$LOGS/ingest.json"
"$PY" - "$LOGS/ingest.json" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1]))[0]
report = next(t for t in run["traces"] if t["stage"] == "ingest")
print(f"  ingest: {report['status']} in {report['latency_ms'] / 1000:.1f} s; {report['output_preview']}")
EOF

step "Validate the workbook (every problem at once, none expected)"
"$NUX" validate "$NB"

step "Evaluate the baseline on the 40-question test bank"
evaluate baseline

step "Tune top_k, hybrid search, context size and prompt variant (Optuna, small budget)"
"$NUX" tune "$NB" --trials "$TRIALS" --timeout "$TUNE_S" --seed 1 --objective quality \
  --no-plots 2>&1 | grep --line-buffered -E "^trial|^best|^trials|^study" || true

step "Pin the best trial into the notebook cells"
if ! "$NUX" pin "$NB" > "$LOGS/pin.txt" 2>&1; then
  # No trial met every acceptance threshold: pin the best-quality trial if it beats the
  # baseline's pass rate, else keep the baseline.
  BEST=$("$PY" - "$WORK/.nux/studies.db" "$LOGS/baseline.json" <<'PY' || true
import json
import sys
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = f"sqlite:///{sys.argv[1]}"
try:
    baseline = json.load(open(sys.argv[2]))["summary"]["pass_rate"]
except (OSError, ValueError, KeyError):
    baseline = 0.0
name = max(optuna.get_all_study_summaries(storage),
           key=lambda s: s.datetime_start.timestamp() if s.datetime_start else 0).study_name
study = optuna.load_study(study_name=name, storage=storage)
done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.values]
best = max(done, key=lambda t: t.values[0]) if done else None
print(best.number if best is not None and best.values[0] > baseline else "")
PY
)
  if [[ -n "$BEST" ]]; then
    note "no trial met every acceptance threshold; pinned the best-quality trial $BEST"
    "$NUX" pin "$NB" --trial "$BEST" > "$LOGS/pin.txt" 2>&1 || note "nux pin failed"
  else
    note "no trial beat the baseline within the budget; the baseline stays (raise NUX_DEMO_TUNE_S)"
  fi
fi
tail -n 12 "$LOGS/pin.txt"

step "Evaluate the tuned workbook"
evaluate tuned

step "Export for production to build/deploy/rag_qa (Pulumi project, Serve config, Kubernetes YAML)"
EXPORTED=0
if "$NUX" export "$NB" -o "$DEPLOY" > "$LOGS/export.txt" 2>&1; then
  EXPORTED=1
else
  note "the tuned workbook does not pass its acceptance gate; exporting with --force (recorded)"
  "$NUX" export "$NB" -o "$DEPLOY" --force > "$LOGS/export.txt" 2>&1 && EXPORTED=1
fi
tail -n 3 "$LOGS/export.txt"

step "Serve the exported folder as it is on a local Ray and send three questions over HTTP"
: > "$LOGS/answers.json"
if [[ "$EXPORTED" == 1 && -f "$DEPLOY/serve_config.yaml" ]]; then
  # The local profile: the exported folder runs unchanged. Its ingest jobs fill the store the
  # served stages read (paths relative to the folder), then Ray's `serve run` serves
  # serve_config.yaml from the folder on the port it names.
  PORT=$("$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["http_options"]["port"])' \
    "$DEPLOY/serve_config.yaml")
  for job in "$DEPLOY"/jobs/*.json; do
    [[ -f "$job" ]] || continue
    echo "  ingest job $(basename "$job")"
    (cd "$DEPLOY" && "$PY" -m nux_runtime.jobs run "jobs/$(basename "$job")") \
      > "$LOGS/job-$(basename "$job" .json).log" 2>&1 || note "ingest job $(basename "$job") failed; see build/demo/logs"
  done
  (
    cd "$DEPLOY"
    # `ray start --head --num-cpus 8` and `serve run serve_config.yaml`, in one private process
    # tree (a busy machine can miss Ray's start-up window: try again).
    exec setsid "$PY" -c '
import ray
from ray.serve.scripts import cli
for attempt in range(3):
    try:
        ray.init(address="local", num_cpus=8, include_dashboard=False)
        break
    except Exception:
        ray.shutdown()
        if attempt == 2:
            raise
cli.main(["run", "serve_config.yaml"])
' > "$LOGS/serve.log" 2>&1
  ) &
  SERVE_PID=$!
  echo "  serve run started (pid $SERVE_PID, log build/demo/logs/serve.log); waiting for /healthz"
  "$PY" - "$PORT" "$SERVE_PID" "$LOGS/answers.json" <<'EOF' || note "the served app did not answer; see build/demo/logs/serve.log"
import json, os, sys, time, urllib.error, urllib.request
port, pid, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
base = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + 300
while True:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("  serve run exited early")
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as r:
            if r.status == 200:
                break
    except (urllib.error.URLError, OSError):
        pass
    if time.monotonic() > deadline:
        sys.exit("  the served app was not ready in 300 s")
    time.sleep(2)
questions = ["Which tool sends on-call pages?",
             "What is the address of the Lisbon office?",
             "Which company provides health insurance?"]
answers = []
for q in questions:
    started = time.perf_counter()
    request = urllib.request.Request(f"{base}/v1/run", data=json.dumps({"question": q}).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=120) as r:
        body = json.loads(r.read())
    ms = (time.perf_counter() - started) * 1000
    answers.append({"question": q, "answer": body.get("output"), "latency_ms": ms})
    print(f"  {ms:7.0f} ms  {q}\n           -> {body.get('output')}")
json.dump(answers, open(out, "w"))
EOF
  cleanup
  SERVE_PID=""
else
  note "nothing exported, so nothing to serve"
fi

step "Summary"
"$PY" - "$LOGS" "$DEPLOY" "$(( $(date +%s) - START ))" "${NOTES[@]+"${NOTES[@]}"}" <<'EOF'
import json, sys
from pathlib import Path
logs, deploy, elapsed, notes = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4:]

def summary(name):
    try:
        return json.loads((logs / f"{name}.json").read_text())["summary"]
    except (OSError, ValueError, KeyError):
        return None

rows = [("", "pass rate", "p95 latency", "cost/request", "acceptance")]
for label, name in (("baseline", "baseline"), ("tuned", "tuned")):
    s = summary(name)
    rows.append((label, "-", "-", "-", "-") if s is None else (
        label, f"{s['pass_rate']:.0%}", f"{s['latency_ms']['p95']:.0f} ms",
        f"${s['cost_per_request']:.6f}", "PASS" if s["passed"] else "FAIL"))
print("\nbaseline vs tuned (40 questions, local gemma-3-270m)")
for row in rows:
    print("  " + "".join(cell.ljust(w) for cell, w in zip(row, (10, 11, 13, 14, 10))))
print(f"\nexported to {deploy}:")
if deploy.is_dir():
    for path in sorted(p for p in deploy.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(deploy)}  ({path.stat().st_size} bytes)")
else:
    print("  (nothing exported)")
print("\nserved answers:")
try:
    answers = json.loads((logs / "answers.json").read_text())
except (OSError, ValueError):
    answers = []
for a in answers:
    print(f"  {a['latency_ms']:7.0f} ms  {a['question']}\n           -> {a['answer']}")
if not answers:
    print("  (none)")
for line in notes:
    print(f"note: {line}")
print(f"\ndone in {elapsed} s")
EOF
