#!/bin/bash
# The guest side of make test-cgroup2, run as root at boot by boot.sh: the API checks on
# cgroup v2, then the runtime integration tests. Every request and answer is printed; each check
# prints one CHECK PASS or CHECK FAIL line.
set -u
OUT=${OUT:-/opt/cg2/out}
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
B=http://127.0.0.1:8080
D=${D:-/opt/cg2/servcraftd}
DARGS=(--listen 127.0.0.1:8080 --state-dir /var/lib/servcraftd --containerd-address /run/containerd/containerd.sock
  --fallback-archive /opt/cg2/node20.tar --toolchain-dir /opt/cg2/toolchain --pull=false --pool-size 1 --log-format json)
NS=servcraft
R= CODE=
section() { echo; echo "######## $* ($(date -u +%T))"; }
run() { echo "\$ $*"; "$@" 2>&1; echo "[rc=$?]"; }
v() { local name=$1; shift; if "$@" >/dev/null 2>&1; then echo "CHECK PASS: $name"; else echo "CHECK FAIL: $name"; fi; }
api() { # METHOD PATH [JSON]
  local m=$1 p=$2 d=${3-}
  echo ">>> $m $p${d:+ $d}"
  if [ -n "$d" ]; then R=$(curl -sS -m 180 -X "$m" "$B$p" -H 'Content-Type: application/json' -d "$d" -w '\n%{http_code}' 2>&1)
  else R=$(curl -sS -m 180 -X "$m" "$B$p" -w '\n%{http_code}' 2>&1); fi
  CODE=${R##*$'\n'}; R=${R%$'\n'*}
  echo "<<< HTTP $CODE $R"
}
jqt() { jq -e "$1" <<<"$R"; }
exec_js() { local x='{}'; [ $# -ge 3 ] && x=$3; api POST /api/playground/execute "$(jq -nc --arg s "$1" --arg c "$2" --argjson x "$x" '{sessionId:$s,code:$c}+$x')"; }
shell() { local x='{}'; [ $# -ge 3 ] && x=$3; api POST /api/playground/shell "$(jq -nc --arg s "$1" --arg c "$2" --argjson x "$x" '{sessionId:$s,command:$c}+$x')"; }
task_pid() { ctr -n $NS task ls 2>/dev/null | awk -v id="$1" '$1==id{print $2}'; }
host_cgroup() { # container id -> cgroup dir on the host
  local pid; pid=$(task_pid "$1"); [ -n "$pid" ] || return 1
  echo "/sys/fs/cgroup$(awk -F: '$1=="0"{print $3}' /proc/$pid/cgroup)"
}
show_cgroup() {
  local cg; cg=$(host_cgroup "$1") || { echo "no task for $1"; return; }
  echo "host cgroup of $1: $cg"
  for f in cgroup.type cgroup.controllers cgroup.subtree_control cpu.max memory.max memory.swap.max memory.high pids.max pids.current memory.current memory.events cpu.stat; do
    [ -e "$cg/$f" ] && echo "  $f: $(tr '\n' ' ' < "$cg/$f")"
  done
  echo "  child cgroups: $(cd "$cg" && find . -mindepth 1 -type d | tr '\n' ' ')"
  echo "  processes in the tree:"; for p in $(cat $(find "$cg" -name cgroup.procs)); do echo "    $p $(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null)  [$(cut -d: -f3 /proc/$p/cgroup 2>/dev/null)]"; done
  [ -d "$cg/servcraft-user" ] && echo "  servcraft-user pids.max: $(cat "$cg/servcraft-user/pids.max") pids.current: $(cat "$cg/servcraft-user/pids.current")"
}
none_running() { # CHECK-NAME PATTERN: no process of t1 matches PATTERN
  shell t1 'ps -o pid,args'
  v "$1" bash -c '! jq -r .output <<<"$1" | grep -q "$2"' _ "$R" "$2"
}
start_daemon() {
  setsid "$D" "${DARGS[@]}" >> "$OUT/servcraftd.log" 2>&1 < /dev/null &
  DPID=$!; echo "servcraftd pid $DPID"
  for i in $(seq 1 240); do
    if curl -sf -m 3 $B/readyz >/dev/null 2>&1; then echo "ready after ~$((i/2))s"; api GET /readyz; return 0; fi
    kill -0 $DPID 2>/dev/null || { echo "servcraftd exited"; wait $DPID; echo "exit $?"; return 1; }
    sleep 0.5
  done
  echo "not ready after 120s"; return 1
}

start_containerd() {
  for i in $(seq 1 60); do [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1 && break; systemctl start containerd; sleep 1; done
  run systemctl is-active containerd
}
# A daemon whose state folder is on ext4 mounted with project quotas picks
# the project backend; a session's writes stop at its quota inside the
# sandbox and through the API, and a fork copies its files.
project_checks() {
  section "project-quota workspaces end to end (state folder on ext4 with prjquota)"
  local prj=/var/lib/servcraftd-prj img=/var/tmp/servcraftd-prj.ext4 saved=("${DARGS[@]}")
  truncate -s 2G "$img" && mkfs.ext4 -q -F -O quota,project -E quotatype=prjquota "$img" && mkdir -p "$prj" && mount -o loop,prjquota "$img" "$prj"
  v "ext4 with project quotas mounted" mountpoint -q "$prj"
  DARGS=(--listen 127.0.0.1:8080 --state-dir "$prj" --containerd-address /run/containerd/containerd.sock --namespace servcraft-prj
    --fallback-archive /opt/cg2/node20.tar --toolchain-dir /opt/cg2/toolchain --pull=false --pool-size 1 --log-format json --workspace-size 64MiB
    --disk-reserve 128MiB --dep-cache-size 256MiB --npm-cache-size 256MiB) # the reserve a create keeps fits the 2 GiB filesystem
  start_daemon || echo "CHECK FAIL: servcraftd start on the project backend"
  v "the daemon chose the project backend" grep -q '"msg":"workspaces","backend":"project"' "$OUT/servcraftd.log"
  api POST /api/playground/container '{"sessionId":"q1","projectType":"js"}'
  v "create q1" jqt '.success == true'
  shell q1 'dd if=/dev/zero of=big bs=4k count=25600 2>&1; sync; echo rc=$?'
  v "a writer in the sandbox stops at the quota (EDQUOT)" jqt '.output | test("quota exceeded")'
  api GET "/api/playground/container?sessionId=q1"
  v "usage near the 64 MiB quota" jqt '.usage.workspaceLimitBytes == 67108864 and .usage.workspaceBytes > 50000000 and .usage.workspaceBytes <= 67108864'
  api POST /api/playground/sync "$(jq -nc --arg c "$(head -c 100000 /dev/zero | tr '\0' x)" '{sessionId:"q1",files:[{name:"more.txt",type:"file",content:$c}]}')"
  v "a sync past the quota is refused (workspace_full), not written past it" jqt '.code == "workspace_full"'
  shell q1 'rm -f big; echo after > after.txt && cat after.txt'
  v "usable again after the clean-up" jqt '.output == "after\n"'
  api POST /api/playground/container '{"sessionId":"q2","from":"q1"}'
  v "fork q1 into q2" jqt '.success == true'
  shell q2 'cat after.txt'
  v "the fork holds q1's files" jqt '.output == "after\n"'
  for s in q1 q2; do api DELETE "/api/playground/container?sessionId=$s"; v "destroy $s" jqt '.success == true'; done
  v "no workspace left but the warm container's" bash -c '[ "$(ls -A "$1/workspaces" | wc -l)" = 1 ]' _ "$prj"
  kill -TERM $DPID; wait $DPID; echo "servcraftd exit $?"
  umount "$prj"; rm -f "$img"
  DARGS=("${saved[@]}")
}
if [ -n "${PROJECT_ONLY:-}" ]; then start_containerd; project_checks; exit 0; fi

section "guest system"
run uname -r
run cat /etc/debian_version
run containerd --version
run runc --version
run stat -fc %T /sys/fs/cgroup
run cat /sys/fs/cgroup/cgroup.controllers
v "cgroup v2 only (cgroup2fs at /sys/fs/cgroup)" [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]
for c in cpu memory pids; do v "controller $c available" grep -qw $c /sys/fs/cgroup/cgroup.controllers; done
start_containerd

section "start servcraftd"
start_daemon || { echo "CHECK FAIL: servcraftd start"; tail -50 "$OUT/servcraftd.log"; }
v "start-up log names cgroup v2" grep -q '"msg":"host","cgroup":"v2"' "$OUT/servcraftd.log"

section "create session t1: limits in the v2 files"
api POST /api/playground/container '{"sessionId":"t1","projectType":"js"}'
v "create t1" jqt '.success == true'
CID1=$(jq -r .containerId <<<"$R"); echo "container $CID1"
show_cgroup "$CID1"
CG1=$(host_cgroup "$CID1")
v "memory.max 512 MiB" [ "$(cat "$CG1/memory.max")" = 536870912 ]
v "cpu.max 0.5 CPU" [ "$(cat "$CG1/cpu.max")" = "50000 100000" ]
v "runs' pids.max is the session's limit (256)" [ "$(cat "$CG1/servcraft-user/pids.max")" = 256 ]
v "the container's own pids.max keeps room for the spawner (256+64)" [ "$(cat "$CG1/pids.max")" = 320 ]

section "execute, and the spawner's uid and capabilities"
exec_js t1 'console.log("hello from", process.version, process.getuid())'
v "execute hello" jqt '.success == true and (.output|test("hello from v20"))'
shell t1 'id; grep -E "^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status; echo "--- pid 1"; grep -E "^(Name|Uid|CapEff|CapBnd|NoNewPrivs):" /proc/1/status; cat /proc/self/cgroup'
v "runs as uid 1000" jqt '.output|test("uid=1000")'
v "run has no capabilities" jqt '.output|test("CapEff:\t0000000000000000")'
v "run under seccomp" jqt '.output|test("Seccomp:\t2")'
v "PID 1 is the spawner" jqt '.output|test("Name:\tservcraft-spawn")'
v "run in a run cgroup under servcraft-user" jqt '.output|test("servcraft-user/")'

section "memory hog: OOM kill, then the next run"
exec_js t1 'const a=[]; let i=0; for(;;){ a.push(Buffer.alloc(32*1024*1024, 1)); i++; }' '{"timeoutMs":60000}'
v "memory hog oomKilled" jqt '.oomKilled == true'
run cat "$CG1/memory.events"
exec_js t1 'console.log("after oom ok")'
v "run after OOM works" jqt '.success == true and (.output|test("after oom ok"))'

section "0.5 CPU"
exec_js t1 'const s=process.cpuUsage(); const t0=Date.now(); while(Date.now()-t0<2000){} const u=process.cpuUsage(s); console.log(JSON.stringify({cpuMs:Math.round((u.user+u.system)/1000)}))' '{"timeoutMs":30000}'
CPU=$(jq -r '.output|fromjson|.cpuMs' <<<"$R" 2>/dev/null); echo "cpuMs=$CPU"
v "2 s busy loop used at most ~0.5 CPU (<= 1300 ms)" bash -c '[ "$1" -gt 0 ] && [ "$1" -le 1300 ]' _ "${CPU:-0}"
run cat "$CG1/cpu.stat"

section "timeout kill leaves nothing"
exec_js t1 'require("child_process").spawn("sh",["-c","sleep 1000"],{detached:true}); while(true){}' '{"timeoutMs":2000}'
v "timedOut" jqt '.timedOut == true'
none_running "no sleep or loop left" "sleep 1000"

section "background process tree killed"
shell t1 'sleep 1001 & sleep 1002' '{"background":true}'
BG=$(jq -r .pid <<<"$R"); sleep 2
api DELETE "/api/playground/processes?sessionId=t1&id=$BG"
v "DELETE process" jqt '.success == true'
none_running "no sleep left after the kill" "sleep 100"

section "fork bomb at the pids limit"
SPAWNER_BEFORE=$(task_pid "$CID1")
shell t1 'b(){ b | b & }; b; while :; do :; done' '{"timeoutMs":15000}'
v "the bomb ran until its timeout" jqt '.timedOut == true'
show_cgroup "$CID1"
run cat "$CG1/servcraft-user/pids.events"
v "the bomb met the runs' pids limit" [ "$(awk '$1=="max"{print $2}' "$CG1/servcraft-user/pids.events")" -gt 0 ]
sleep 2
v "the spawner survived (same task pid)" [ "$(task_pid "$CID1")" = "$SPAWNER_BEFORE" ]
exec_js t1 'console.log("after the bomb")'
v "a run after the fork bomb works" jqt '.success == true and (.output|test("after the bomb"))'
shell t1 'ps -o pid,args | wc -l'
v "the bomb's processes are gone" bash -c '[ "$(jq -r .output <<<"$1" | tr -d " \n")" -lt 10 ]' _ "$R"

section "kill -9 of the daemon keeps the session"
shell t1 'sleep 1003' '{"background":true}'
BG2=$(jq -r .pid <<<"$R"); sleep 1
kill -9 $DPID; wait $DPID 2>/dev/null; sleep 1
start_daemon || echo "CHECK FAIL: restart"
api GET "/api/playground/container?sessionId=t1"
v "t1 still there after kill -9" jqt ".success == true and .containerId == \"$CID1\""
exec_js t1 'console.log("t1 after restart")'
v "execute after restart" jqt '.success == true'
api GET "/api/playground/processes?sessionId=t1"
v "background process survived the restart" jqt ".processes[] | select(.id==\"$BG2\") | .running == true"

section "destroy"
api DELETE "/api/playground/container?sessionId=t1"
v "destroy t1" jqt '.success == true'
v "t1's cgroup is gone" bash -c '[ ! -d "$1" ]' _ "$CG1"
kill -TERM $DPID; wait $DPID; echo "servcraftd exit $?"
run "$D" gc --yes --state-dir /var/lib/servcraftd --containerd-address /run/containerd/containerd.sock
echo "--- warnings and errors of servcraftd"; grep -E '"level":"(WARN|ERROR)"' "$OUT/servcraftd.log"
project_checks
echo "CHECKS: $(grep -c '^CHECK PASS' "$OUT/results.log" 2>/dev/null) passed, $(grep -c '^CHECK FAIL' "$OUT/results.log" 2>/dev/null) failed (see results.log)"

section "project-quota workspaces (ext4 prjquota: this kernel has quotas, the build machines' lacks them)"
(cd /opt/cg2/src/snapshots/workspace && /opt/cg2/workspace.test -test.v -test.count=1 -test.run 'Project' > "$OUT/workspace-test.log" 2>&1)
echo "workspace.test exit $?"
grep -E '^\s*--- (PASS|FAIL|SKIP)|^(PASS|FAIL|ok)|^panic' "$OUT/workspace-test.log"
v "project-quota backend tests pass, none skipped" bash -c '! grep -qE "^\s*--- (FAIL|SKIP)" "$1" && grep -q "^--- PASS: TestProjectQuotaVolume" "$1"' _ "$OUT/workspace-test.log"

if [ -e /mnt/host/SKIP_GO_TESTS ]; then echo "runtime tests skipped (SKIP_GO_TESTS)"; exit 0; fi
section "runtime integration tests"
cd /opt/cg2/src/runtime
TT=45m; [ -f /mnt/host/GO_TEST_TIMEOUT ] && TT=$(cat /mnt/host/GO_TEST_TIMEOUT)
SERVCRAFT_TEST_CONTAINERD=/run/containerd/containerd.sock SERVCRAFT_TEST_IMAGE_ARCHIVE=/opt/cg2/node20.tar SERVCRAFT_TEST_TOOLCHAIN=/opt/cg2/toolchain \
  SERVCRAFT_TEST_SPAWNER=/opt/cg2/servcraft-spawner SERVCRAFT_TEST_SLOWDOWN=5 /opt/cg2/runtime.test -test.v -test.count=1 -test.timeout "$TT" > "$OUT/runtime-test.log" 2>&1
echo "runtime.test exit $?"
grep -E '^\s*--- (PASS|FAIL|SKIP)|^(PASS|FAIL|ok)|^panic' "$OUT/runtime-test.log"
echo "TESTS: $(grep -c -- '^--- PASS' "$OUT/runtime-test.log") passed, $(grep -c -- '^--- FAIL' "$OUT/runtime-test.log") failed, $(grep -c -- '^--- SKIP' "$OUT/runtime-test.log") skipped"
