#!/usr/bin/env bash
# Static checks of the deployment files (deploy/, Vagrantfile) that need neither a running
# systemd nor a VM, so they run in CI:
#   - Vagrantfile: Ruby syntax, then evaluated against a stand-in for Vagrant's config API
#     (box, resources, port forward on the host's loopback, the provisioning script);
#   - deploy/*.sh, this script and the Vagrantfile's provisioning script: bash -n, and
#     also ShellCheck when it is installed;
#   - every SERVCRAFT_* name used in deploy/ and the Vagrantfile is a flag of
#     servcraftd (its --help), every flag appears in deploy/servcraftd.env.example, and
#     servcraftd accepts every value the example shows;
#   - deploy/servcraftd.service: `systemd-analyze verify` (on a copy whose ExecStart is this
#     checkout's bin/servcraftd, beside a stub containerd.service), plus guards: no
#     directive that gives the service its own mount namespace or a device allow-list
#     (they would hide the workspace loop mounts from runc or block /dev/loop*), and
#     KillMode=process;
#   - deploy/install.sh staged with --destdir into a temporary folder, twice: the second
#     run must change nothing.
# Installs the Debian packages ruby and systemd first when ruby or systemd-analyze is
# missing (root and apt-get needed then). Builds bin/servcraftd when it is missing or older
# than the Go sources. Exit status 1 when any check failed; warnings do not fail.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
start=$SECONDS
failures=0
log() { echo "check-deploy: $*"; }
ok() { log "ok    $*"; }
warn() { log "warn  $*"; }
fail() {
	log "FAIL  $*"
	failures=$((failures + 1))
}
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --- tools -----------------------------------------------------------------------------
need=()
command -v ruby >/dev/null || need+=(ruby)
command -v systemd-analyze >/dev/null || need+=(systemd)
if ((${#need[@]})); then
	log "installing ${need[*]}"
	[ "$(id -u)" = 0 ] || { fail "need root to install ${need[*]}"; exit 1; }
	export DEBIAN_FRONTEND=noninteractive
	if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } >"$tmp/apt.log" 2>&1; then
		cat "$tmp/apt.log"
		fail "apt-get install ${need[*]}"
		exit 1
	fi
	start=$SECONDS # the budget below is for the checks themselves
fi

# --- Vagrantfile -------------------------------------------------------------------------
if out="$(ruby -c Vagrantfile 2>&1)"; then
	ok "ruby -c Vagrantfile"
else
	fail "ruby -c Vagrantfile: $out"
fi
cat >"$tmp/vagrant_stub.rb" <<'RUBY'
# Evaluates a Vagrantfile against a stand-in for Vagrant's configuration API: every call
# is recorded, blocks (providers) get their own recorder. Then checks what it asked for,
# and writes inline shell provisioners to files for bash -n and shellcheck.
class Recorder
  attr_reader :attrs, :calls, :children
  def initialize; @attrs = {}; @calls = []; @children = {}; end
  def respond_to_missing?(*) = true
  def method_missing(name, *args, **kw, &blk)
    n = name.to_s
    return @attrs[n.chomp("=")] = args.first if n.end_with?("=")
    if blk
      child = Recorder.new
      blk.call(child)
      @calls << [n, args, kw, child]
      return child
    end
    return (@children[n] ||= Recorder.new) if args.empty? && kw.empty?
    @calls << [n, args, kw, nil]
    nil
  end
end
module Vagrant
  def self.configure(version)
    raise "Vagrant.configure(#{version.inspect}): want \"2\"" unless version == "2"
    (@configs ||= []) << (c = Recorder.new)
    yield c
  end
  def self.configs = @configs || []
end
path, outdir = ARGV
load path
errors = []
check = ->(ok, msg) { errors << msg unless ok }
cfg = Vagrant.configs.first or abort("no Vagrant.configure block")
vm = cfg.children["vm"] or abort("no config.vm")
check.(vm.attrs["box"] == "debian/bookworm64", "box is #{vm.attrs["box"].inspect}, want debian/bookworm64")
fwd = vm.calls.select { |c| c[0] == "network" && c[1] == ["forwarded_port"] }.map { |c| c[2] }
check.(fwd.any? { |o| o[:guest] == 8080 && o[:host] == 8080 && o[:host_ip] == "127.0.0.1" },
       "no forwarded_port guest 8080 -> host 127.0.0.1:8080 (got #{fwd.inspect})")
check.(fwd.all? { |o| o[:host_ip] == "127.0.0.1" }, "a forwarded port is not bound to the host's loopback")
providers = vm.calls.select { |c| c[0] == "provider" }.to_h { |c| [c[1].first.to_s, c[3]] }
check.(providers.key?("virtualbox"), "no virtualbox provider block")
providers.each do |name, p|
  check.(p.attrs["cpus"] == 2, "#{name}: cpus #{p.attrs["cpus"].inspect}, want 2")
  check.(p.attrs["memory"] == 4096, "#{name}: memory #{p.attrs["memory"].inspect}, want 4096")
end
shells = vm.calls.select { |c| c[0] == "provision" && c[1].first.to_s == "shell" }
check.(!shells.empty?, "no shell provisioner")
shells.each_with_index do |c, i|
  script = c[2][:inline] or next errors << "shell provisioner #{i} has no inline script"
  check.(script.include?("deploy/install.sh"), "provisioner #{i} does not run deploy/install.sh")
  check.(script.include?("make build"), "provisioner #{i} does not run make build")
  # The provisioner's env: becomes variables at the top, as Vagrant exports them.
  env = (c[2][:env] || {}).map { |k, v| "#{k}=#{v.to_s.inspect}\nexport #{k}\n" }.join
  File.write(File.join(outdir, "provision-#{i}.sh"), "#!/usr/bin/env bash\n#{env}#{script}")
end
if errors.empty?
  puts "box #{vm.attrs["box"]}, providers #{providers.keys.join(", ")}, #{fwd.size} forward(s), #{shells.size} shell provisioner(s)"
else
  warn errors.map { |e| "Vagrantfile: #{e}" }.join("\n")
  exit 1
end
RUBY
mkdir -p "$tmp/provision"
if out="$(ruby "$tmp/vagrant_stub.rb" Vagrantfile "$tmp/provision" 2>&1)"; then
	ok "Vagrantfile evaluated: $out"
else
	fail "Vagrantfile evaluated against the config stub:"$'\n'"$out"
fi

# --- shell scripts -----------------------------------------------------------------------
scripts=(deploy/*.sh scripts/check-deploy.sh)
provision=()
for f in "$tmp"/provision/*.sh; do [ -e "$f" ] && provision+=("$f"); done
syntax_ok=1
for f in "${scripts[@]}" ${provision[@]+"${provision[@]}"}; do
	if ! out="$(bash -n "$f" 2>&1)"; then
		fail "bash -n $f: $out"
		syntax_ok=0
	fi
done
((!syntax_ok)) || ok "bash -n ${scripts[*]}${provision[*]:+ + Vagrantfile provisioner}"
if command -v shellcheck >/dev/null; then
	if out="$(shellcheck -x "${scripts[@]}" 2>&1)" &&
		{ ((${#provision[@]} == 0)) || out="$(shellcheck -s bash "${provision[@]}" 2>&1)"; }; then
		ok "shellcheck"
	else
		fail "shellcheck:"$'\n'"$out"
	fi
else
	warn "shellcheck not installed: skipped"
fi

# --- SERVCRAFT_* names and values --------------------------------------------------------
# A current binary: for the values below and for systemd-analyze verify.
bin="$PWD/bin/servcraftd"
if [ ! -x "$bin" ] || [ -n "$(find cmd api runtime snapshots store go.mod go.sum -newer "$bin" \
	\( -name '*.go' -o -name 'go.*' \) -print -quit 2>/dev/null)" ]; then
	log "building bin/servcraftd"
	go build -o "$bin" ./cmd/servcraftd
fi
# install.sh takes the spawner from beside the binary, as make build leaves it.
spawner="$PWD/bin/servcraft-spawner"
if [ ! -x "$spawner" ] || [ -n "$(find cmd/servcraft-spawner runtime/spawn go.mod go.sum -newer "$spawner" \
	\( -name '*.go' -o -name 'go.*' \) -print -quit 2>/dev/null)" ]; then
	log "building bin/servcraft-spawner"
	CGO_ENABLED=0 go build -o "$spawner" ./cmd/servcraft-spawner
fi
flags="$("$bin" --help 2>&1 | sed -nE 's/^  -([a-z0-9-]+)( .*)?$/\1/p')"
[ -n "$flags" ] || fail "found no flags in servcraftd --help"
known="$(tr 'a-z-' 'A-Z_' <<<"$flags" | sed 's/^/SERVCRAFT_/' | sort -u)"
used="$(grep -ohE 'SERVCRAFT_[A-Z0-9_]+' deploy/servcraftd.service deploy/servcraftd.env.example \
	deploy/install.sh deploy/upgrade.sh deploy/lib.sh Vagrantfile | sort -u | grep -vx 'SERVCRAFT_NAME' || true)"
unknown="$(comm -23 <(echo "$used") <(echo "$known"))"
if [ -z "$unknown" ]; then
	ok "every SERVCRAFT_* name in deploy/ and Vagrantfile is a flag ($(wc -l <<<"$used") names)"
else
	fail "not flags of servcraftd: $(echo "$unknown" | tr '\n' ' ')"
fi
listed="$(sed -nE 's/^#?(SERVCRAFT_[A-Z0-9_]+)=.*/\1/p' deploy/servcraftd.env.example | sort -u)"
unlisted="$(comm -23 <(echo "$known") <(echo "$listed"))"
if [ -z "$unlisted" ]; then
	ok "every flag is in deploy/servcraftd.env.example"
else
	warn "flags missing from deploy/servcraftd.env.example: $(echo "$unlisted" | tr '\n' ' ')"
fi

# The daemon applies SERVCRAFT_* values before parsing flags, and --help stops right
# after: exit status 0 means every value parsed (range checks run only at a real start).
mapfile -t example < <(sed -nE 's/^#?(SERVCRAFT_[A-Z0-9_]+=.*)$/\1/p' deploy/servcraftd.env.example)
if out="$(env -i PATH="$PATH" "${example[@]}" "$bin" --help 2>&1 >/dev/null)"; then
	ok "servcraftd parses all ${#example[@]} values shown in deploy/servcraftd.env.example"
else
	fail "servcraftd rejects a value in deploy/servcraftd.env.example: $(grep -v '^  \|^Usage' <<<"$out" | head -3)"
fi

# --- systemd unit ------------------------------------------------------------------------
unit=deploy/servcraftd.service
mkdir -p "$tmp/unit"
grep -q '^ExecStart=/usr/local/bin/servcraftd$' "$unit" || fail "$unit: ExecStart is not /usr/local/bin/servcraftd"
sed "s|^ExecStart=/usr/local/bin/servcraftd|ExecStart=$bin|" "$unit" >"$tmp/unit/servcraftd.service"
# A stub, so that Requires=containerd.service resolves whether or not containerd is installed.
printf '[Unit]\nDescription=stub for check-deploy\n[Service]\nExecStart=/bin/true\n' >"$tmp/unit/containerd.service"
rc=0
out="$(cd "$tmp/unit" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "$tmp/unit/servcraftd.service" 2>&1)" || rc=$?
# Everything about our unit is an error: systemd-analyze only warns ("ignoring") about
# unknown keys and bad values, and exits 0. Lines about other units (the host's own
# system units, pulled in as dependencies) are the host's business: warnings.
ours="$(grep -E 'servcraftd\.service' <<<"$out" || true)"
others="$(grep -vE 'servcraftd\.service' <<<"$out" | grep . || true)"
if [ "$rc" = 0 ] && [ -z "$ours" ]; then
	ok "systemd-analyze verify $unit"
else
	fail "systemd-analyze verify $unit (exit $rc):"$'\n'"${ours:-$out}"
fi
[ -z "$others" ] || warn "systemd-analyze verify, about other units:"$'\n'"$others"
# Guards. Each of these gives the service its own mount namespace (mounts made there never
# reach the host: runc would not see the workspace loop mounts) or a device allow-list
# (no /dev/loop*), or forbids the setns() into sessions' network namespaces.
bad="$(grep -nE '^[[:space:]]*(PrivateMounts|PrivateTmp|PrivateDevices|ProtectSystem|ProtectHome|ProtectKernelTunables|ProtectKernelModules|ProtectKernelLogs|ProtectControlGroups|ProtectClock|ProtectProc|ProcSubset|ReadOnlyPaths|ReadWritePaths|InaccessiblePaths|ExecPaths|NoExecPaths|TemporaryFileSystem|BindPaths|BindReadOnlyPaths|RootDirectory|RootImage|MountImages|ExtensionImages|MountAPIVFS|DynamicUser|LoadCredential|LoadCredentialEncrypted|SetCredential|SetCredentialEncrypted|PrivateUsers|PrivateNetwork|NetworkNamespacePath|DeviceAllow|DevicePolicy|RestrictNamespaces|MountFlags|User|Group)=' "$unit" |
	grep -vE '=[[:space:]]*(no|false|0|off|default)?[[:space:]]*$' || true)"
if [ -z "$bad" ]; then
	ok "$unit: no mount namespace, no device allow-list, no user switch"
else
	fail "$unit: directives that break workspace mounts, loop devices or setns (see the unit's comments):"$'\n'"$bad"
fi
if grep -q '^KillMode=process$' "$unit"; then ok "$unit: KillMode=process"; else fail "$unit: KillMode is not process"; fi
if score="$(systemd-analyze security --offline=yes --no-pager "$tmp/unit/servcraftd.service" 2>/dev/null | grep -i 'overall exposure')"; then
	log "info  ${score#→ }"
fi

# --- staged install ----------------------------------------------------------------------
stage="$tmp/stage"
if out="$(deploy/install.sh --destdir "$stage" --no-build --binary "$bin" --set SERVCRAFT_LISTEN=127.0.0.1:8080 2>&1)"; then
	missing=()
	for f in usr/local/bin/servcraftd usr/local/bin/servcraft-spawner etc/systemd/system/servcraftd.service etc/servcraftd/servcraftd.env; do
		[ -s "$stage/$f" ] || missing+=("$f")
	done
	if ((${#missing[@]})); then
		fail "install.sh --destdir did not install ${missing[*]}"
	elif ! cmp -s "$stage/etc/systemd/system/servcraftd.service" "$unit"; then
		fail "install.sh --destdir installed a unit that differs from $unit"
	elif out="$(deploy/install.sh --destdir "$stage" --no-build --binary "$bin" --set SERVCRAFT_LISTEN=127.0.0.1:8080 2>&1)" &&
		! grep -q 'changed:' <<<"$out"; then
		ok "install.sh --destdir: installs binary, spawner, unit and env file; a second run changes nothing"
	else
		fail "install.sh --destdir, second run:"$'\n'"$out"
	fi
else
	fail "install.sh --destdir:"$'\n'"$out"
fi

# -------------------------------------------------------------------------------------------
elapsed=$((SECONDS - start))
if ((failures)); then
	log "$failures check(s) failed (${elapsed}s)"
	exit 1
fi
log "all checks passed (${elapsed}s)"
