package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// envExampleHeader starts deploy/servcraftd.env.example.
const envExampleHeader = `# /etc/servcraftd/servcraftd.env: settings of servcraftd.service (systemd EnvironmentFile).
#
# Generated from the daemon's flags by ` + "`make config-doc`" + ` (servcraftd env-example); do not edit
# the copy in the repository, edit the installed one.
#
# One variable per flag: --idle-timeout is SERVCRAFT_IDLE_TIMEOUT (` + "`servcraftd --help`" + ` lists
# every flag, docs/configuration.md too). A line is NAME=value, no spaces around "=", no "export";
# "#" starts a comment only at the beginning of a line. A variable that is unset or empty keeps
# the built-in default (or the value of the config file). Invalid values stop the daemon with
# exit status 2 (see ` + "`journalctl -u servcraftd`" + `), and systemd does not retry those. Apply
# changes with ` + "`systemctl restart servcraftd`" + `: sessions survive a restart.
#
# Sizes take B, KiB, MiB, GiB (KB, MB, GB are powers of 1000) or plain bytes; durations are
# Go durations (90s, 30m, 1h); rates are RATE/UNIT:BURST (UNIT s, m or h), 0 is no limit.
#
# The commented values below are the defaults; lines marked "example" are not.
`

// envExampleNotes adds, below a flag's own usage, what matters on a
// systemd host: the unit's values, the unit's timeouts, examples.
var envExampleNotes = map[string][]string{
	"listen": {"Keep it on loopback unless an API token is set: the daemon warns at start when it",
		"listens beyond this host without one."},
	"api-token":      {"A token here is visible to whoever can read this file or the process environment.", "Set only one of the two."},
	"api-token-file": {"example: SERVCRAFT_API_TOKEN_FILE=/etc/servcraftd/api-token   (root-owned, mode 0600)"},
	"destroy-on-shutdown": {"If set, raise TimeoutStopSec= in a drop-in (`systemctl edit servcraftd`): destroying",
		"every session takes longer than the unit waits."},
	"shutdown-timeout": {"Keep it below the unit's TimeoutStopSec= (30s)."},
	"registry": {"Empty: what `npm config get registry` answers for root at start (needs npm on the",
		"host; without either, installs answer 503). Setting it here is more predictable."},
	"image": {"To use only the offline image and never pull (example):",
		"SERVCRAFT_IMAGE=localhost/servcraft/node:20 and SERVCRAFT_PULL=false"},
	"fallback-archive": {"The unit sets /var/lib/servcraftd/image/node20.tar, which deploy/install.sh builds."},
	"toolchain-dir": {"The unit sets /var/lib/servcraftd/toolchain, which deploy/install.sh fills. An empty",
		"value (SERVCRAFT_TOOLCHAIN_DIR=, uncommented) falls back to the built-in default, which is",
		"no TypeScript toolchain: executing .ts files is then refused."},
	"state-dir":          {"The unit sets it too (Environment=); this file wins over the unit."},
	"containerd-address": {"The unit sets it too (Environment=); this file wins over the unit."},
	"etcd-ca-file":       {"example: SERVCRAFT_ETCD_CA_FILE=/etc/servcraftd/etcd-ca.pem"},
	"etcd-cert-file":     {"example: SERVCRAFT_ETCD_CERT_FILE=/etc/servcraftd/etcd-client.pem"},
	"etcd-key-file":      {"example: SERVCRAFT_ETCD_KEY_FILE=/etc/servcraftd/etcd-client-key.pem"},
	"cluster-secret-file": {"The same file on every node; root-owned, mode 0600.",
		"example: SERVCRAFT_CLUSTER_SECRET_FILE=/etc/servcraftd/cluster-secret"},
}

// envExampleWidth is where comment lines are wrapped.
const envExampleWidth = 95

// writeEnvExample writes deploy/servcraftd.env.example from the flag set:
// every setting's usage as a comment and its default as a commented line,
// grouped as settingGroups, with envExampleNotes below the usage.
func writeEnvExample(w io.Writer) error {
	fs := defaultFlags()
	var b strings.Builder
	b.WriteString(envExampleHeader)
	for name := range envExampleNotes {
		if fs.Lookup(name) == nil {
			return fmt.Errorf("env example: a note names %q, which is no flag", name)
		}
	}
	for _, g := range settingGroups {
		title := "# --- " + g.title + " "
		fmt.Fprintf(&b, "\n%s%s\n", title, strings.Repeat("-", max(3, envExampleWidth-len(title))))
		for _, name := range g.names {
			f := fs.Lookup(name)
			if f == nil {
				return fmt.Errorf("env example: group %q names %q, which is no flag", g.title, name)
			}
			_, usage := flag.UnquoteUsage(f)
			for _, line := range wrapWords(strings.ToUpper(usage[:1])+usage[1:]+".", envExampleWidth-2) {
				fmt.Fprintf(&b, "# %s\n", line)
			}
			for _, note := range envExampleNotes[name] {
				fmt.Fprintf(&b, "# %s\n", note)
			}
			fmt.Fprintf(&b, "#%s=%s\n", envName(name), f.DefValue)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// wrapWords breaks s into lines of at most width characters at spaces (a
// longer word gets a line of its own).
func wrapWords(s string, width int) []string {
	var lines []string
	var line strings.Builder
	for _, word := range strings.Fields(s) {
		if line.Len() > 0 && line.Len()+1+len(word) > width {
			lines = append(lines, line.String())
			line.Reset()
		}
		if line.Len() > 0 {
			line.WriteByte(' ')
		}
		line.WriteString(word)
	}
	if line.Len() > 0 {
		lines = append(lines, line.String())
	}
	return lines
}
