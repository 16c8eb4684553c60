// The playground page servcraftd serves at /: a session of its own (kept in
// localStorage, so a reload continues it), the session's files in a tree and
// an editor whose edits are synced, Run of a file and of `npm start`, package
// installs, a terminal and the preview. Built only on the public API.
import { EditorView, basicSetup } from "codemirror";
import { EditorState, Compartment } from "@codemirror/state";
import { javascript } from "@codemirror/lang-javascript";
import { json } from "@codemirror/lang-json";
import { oneDark } from "@codemirror/theme-one-dark";
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import "@xterm/xterm/css/xterm.css";
import "./style.css";
import { api, APIError, fileTree, stream, FileEntry, SessionInfo, Process, RunResult } from "./api";

const syncDelayMs = 500; // quiet time after the last keystroke before the file is synced
const pollMs = 15_000; // how often the session's deadline is read again

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const store = {
  get session() { return localStorage.getItem("servcraft.sessionId") || ""; },
  set session(v: string) { v ? localStorage.setItem("servcraft.sessionId", v) : localStorage.removeItem("servcraft.sessionId"); },
  get openFile() { return localStorage.getItem("servcraft.openFile") || ""; },
  set openFile(v: string) { localStorage.setItem("servcraft.openFile", v); },
  get projectType() { return localStorage.getItem("servcraft.projectType") || "js"; },
  set projectType(v: string) { localStorage.setItem("servcraft.projectType", v); },
};

let sessionId = "";
let info: SessionInfo | null = null;
let files: FileEntry[] = [];
let openPath = "";
let dirty = false;
let syncTimer = 0;
let project: Process | null = null;
let logAbort: AbortController | null = null;
let term: Terminal | null = null;
let fit: FitAddon | null = null;
let socket: WebSocket | null = null;

// ---- state shown to the user ----

function setState(state: "loading" | "ready" | "gone" | "start") {
  document.body.dataset.state = state;
  $("overlay").hidden = state === "ready" || state === "loading";
}

function print(text: string, kind: "out" | "err" | "info" = "out") {
  const out = $("output");
  const span = document.createElement("span");
  span.className = kind;
  span.textContent = text;
  out.appendChild(span);
  out.scrollTop = out.scrollHeight;
}

function showError(what: string, err: unknown) {
  if (err instanceof APIError && err.status === 404) void checkGone();
  print(`${what}: ${err instanceof Error ? err.message : String(err)}\n`, "err");
}

function setSync(state: "idle" | "pending" | "saving" | "saved" | "error", text = "") {
  const el = $("sync-state");
  el.dataset.sync = state;
  el.textContent = text || { idle: "", pending: "editing…", saving: "saving…", saved: "saved", error: "not saved" }[state];
}

// ---- session ----

/** Why a call failed, in words for the start panel. */
function explain(err: unknown) {
  if (err instanceof APIError && err.status === 401) {
    return "this servcraftd requires an API token (--api-token); the page works with a daemon that runs without one.";
  }
  return (err as Error).message;
}

function newSessionId() {
  return `session-${Date.now()}-${Math.random().toString(36).slice(2, 13)}`;
}

async function start(projectType: string) {
  setState("loading");
  store.projectType = projectType;
  ($("project-type") as HTMLSelectElement).value = projectType;
  const id = newSessionId();
  try {
    info = await api.create(id, projectType);
  } catch (err) {
    setState("start");
    $("overlay-error").textContent = `Could not create a session: ${explain(err)}`;
    return;
  }
  store.session = id;
  store.openFile = "";
  await enter(id);
  print(`Session ready (${projectType}). ▶ Run file runs the open file (Ctrl+Enter); ▶ npm start runs the project ` +
    `in the background, shown in the preview. A package missing? Install it (an empty field installs package.json's).\n`, "info");
}

/** Attaches the page to an existing session: files, processes, terminal, preview. */
async function enter(id: string) {
  sessionId = id;
  $("session-label").textContent = id;
  $("session-label").title = `sessionId ${id} (${info?.projectType})`;
  $("output").textContent = "";
  updateDeadline();
  await loadFiles();
  const want = store.openFile;
  const first = files.find((f) => f.path === want) || files.find((f) => /^src\/app\.[jt]s$/.test(f.path)) ||
    files.find((f) => f.type === "file");
  if (first) openFile(first.path);
  setState("ready");
  setPreview();
  connectTerminal();
  await reattachProject();
}

async function resume() {
  const id = store.session;
  ($("project-type") as HTMLSelectElement).value = store.projectType;
  if (!id) {
    setState("start");
    return;
  }
  try {
    info = await api.get(id);
  } catch (err) {
    if (err instanceof APIError && err.status === 404) {
      gone(id);
      return;
    }
    setState("start");
    $("overlay-error").textContent = `Could not reach the daemon: ${explain(err)}`;
    return;
  }
  await enter(id);
}

/** The session has ended (expired, deleted, the daemon lost it): say so and offer a new one. */
function gone(id: string) {
  store.session = "";
  sessionId = "";
  info = null;
  disconnectTerminal();
  logAbort?.abort();
  $("overlay-message").textContent =
    `Session ${id} is gone: it expired or was deleted, and its files with it. Start a new session:`;
  setState("gone");
}

/** After a 404: is the session itself gone (and not just a file or process)? */
async function checkGone() {
  if (!sessionId) return;
  const id = sessionId;
  try {
    info = await api.get(id);
    updateDeadline();
  } catch (err) {
    if (err instanceof APIError && err.status === 404 && id === sessionId) gone(id);
  }
}

async function reset() {
  const type = ($("project-type") as HTMLSelectElement).value;
  await flush();
  disconnectTerminal();
  logAbort?.abort();
  setProject(null);
  if (sessionId) {
    try {
      await api.destroy(sessionId);
    } catch (err) {
      if (!(err instanceof APIError && err.status === 404)) {
        showError("reset", err);
        return;
      }
    }
  }
  store.session = "";
  await start(type);
}

function updateDeadline() {
  const el = $("time-left");
  const btn = $("extend") as HTMLButtonElement;
  if (!info) {
    el.textContent = "";
    return;
  }
  const left = Math.max(0, Date.parse(info.expiresAt) - Date.now());
  const m = Math.floor(left / 60000), s = Math.floor((left % 60000) / 1000);
  el.textContent = `${m}:${String(s).padStart(2, "0")} left`;
  el.classList.toggle("low", left < 5 * 60000);
  btn.disabled = info.isExtended;
  btn.textContent = info.isExtended ? "Extended" : "Keep alive";
}

async function extend() {
  try {
    const r = await api.extend(sessionId);
    if (info) Object.assign(info, { isExtended: r.isExtended, expiresAt: r.expiresAt });
    updateDeadline();
    print(`deadline extended to ${new Date(r.expiresAt).toLocaleTimeString()}\n`, "info");
  } catch (err) {
    showError("keep alive", err);
  }
}

// ---- files and editor ----

const language = new Compartment();
const editor = new EditorView({
  parent: $("editor"),
  state: EditorState.create({ doc: "", extensions: [basicSetup, oneDark, language.of([])] }),
});

function languageFor(path: string) {
  if (/\.(json)$/.test(path)) return json();
  if (/\.(tsx)$/.test(path)) return javascript({ typescript: true, jsx: true });
  if (/\.(ts|mts|cts)$/.test(path)) return javascript({ typescript: true });
  if (/\.(jsx)$/.test(path)) return javascript({ jsx: true });
  if (/\.(js|mjs|cjs)$/.test(path)) return javascript();
  return [];
}

async function loadFiles() {
  try {
    files = (await api.files(sessionId)).files;
  } catch (err) {
    showError("read files", err);
    return;
  }
  renderTree();
}

function renderTree() {
  const ul = $("tree");
  ul.textContent = "";
  for (const f of files) {
    const li = document.createElement("li");
    li.className = `node ${f.type}` + (f.path === openPath ? " open" : "");
    li.style.paddingLeft = `${0.6 + f.path.split("/").length * 0.9 - 0.9}em`;
    li.textContent = (f.type === "folder" ? "▸ " : "") + f.name;
    li.dataset.path = f.path;
    li.title = f.path;
    if (f.type === "file") li.onclick = () => void switchTo(f.path);
    ul.appendChild(li);
  }
}

async function switchTo(path: string) {
  await flush();
  openFile(path);
}

function openFile(path: string) {
  const f = files.find((x) => x.path === path);
  if (!f) return;
  openPath = path;
  store.openFile = path;
  const readable = f.content !== undefined && !f.binary && !f.truncated;
  const text = readable ? f.content! : "";
  editor.setState(EditorState.create({
    doc: text,
    extensions: [
      basicSetup, oneDark, language.of(languageFor(path)),
      EditorState.readOnly.of(!readable), EditorView.editable.of(readable),
      EditorView.updateListener.of((u) => { if (u.docChanged) edited(); }),
    ],
  }));
  $("open-file").textContent = path + (readable ? "" : f.binary ? " (binary: not shown)" : " (too large to edit here)");
  setSync("idle");
  renderTree();
}

function edited() {
  dirty = true;
  setSync("pending");
  clearTimeout(syncTimer);
  syncTimer = window.setTimeout(() => void flush(), syncDelayMs);
}

/** Writes the open file if it has unsynced edits. */
async function flush() {
  clearTimeout(syncTimer);
  if (!dirty || !sessionId || !openPath) return;
  dirty = false;
  const path = openPath, content = editor.state.doc.toString();
  setSync("saving");
  try {
    await api.sync(sessionId, fileTree(path, content));
    const f = files.find((x) => x.path === path);
    if (f) f.content = content;
    if (path === openPath && !dirty) setSync("saved");
  } catch (err) {
    dirty = true;
    setSync("error");
    showError(`sync ${path}`, err);
  }
}

/** Unsynced edits still go out when the page is closed or reloaded. */
window.addEventListener("pagehide", () => {
  if (!dirty || !sessionId || !openPath) return;
  const body = JSON.stringify({ sessionId, files: fileTree(openPath, editor.state.doc.toString()) });
  void fetch("/api/playground/sync", { method: "POST", body, keepalive: true, headers: { "Content-Type": "application/json" } });
});

async function addFile(path: string) {
  path = path.trim().replace(/^\/+/, "");
  if (!path) return;
  try {
    if (!files.some((f) => f.path === path)) await api.sync(sessionId, fileTree(path, ""));
    await flush();
    await loadFiles();
    openFile(path);
  } catch (err) {
    showError(`add ${path}`, err);
  }
}

// ---- running ----

function runSummary(r: RunResult & { signal?: string }) {
  const parts = [`exit ${r.exitCode ?? "?"}`];
  if (r.signal) parts.push(r.signal);
  if (r.timedOut) parts.push("timed out");
  if (r.oomKilled) parts.push("out of memory");
  if (r.truncated) parts.push("output cut");
  if (r.durationMs !== undefined) parts.push(`${r.durationMs} ms`);
  return `[${parts.join(", ")}]\n`;
}

async function runFile() {
  if (!openPath) return;
  await flush();
  const btn = $("run-file") as HTMLButtonElement;
  btn.disabled = true;
  print(`$ run ${openPath}\n`, "info");
  try {
    await stream("/api/playground/execute", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sessionId, code: editor.state.doc.toString(), filename: openPath }),
    }, (event, data) => {
      if (event === "stdout") print(data.data);
      else if (event === "stderr") print(data.data, "err");
      else if (event === "exit") print(runSummary(data), data.success ? "info" : "err");
      else if (event === "error") print(`${data.error}\n`, "err");
    });
  } catch (err) {
    showError("run", err);
  } finally {
    btn.disabled = false;
  }
}

function setProject(p: Process | null) {
  project = p && p.running ? p : null;
  ($("run-project") as HTMLButtonElement).disabled = !!project;
  ($("stop") as HTMLButtonElement).disabled = !project;
}

async function runProject() {
  await flush();
  try {
    const r = await api.startBackground(sessionId, "npm start");
    print(`$ npm start  (${r.pid})\n`, "info");
    setProject(r.process);
    followLog(r.process);
    setPreview();
  } catch (err) {
    showError("npm start", err);
  }
}

/** Streams a background process's output into the output pane until it ends. */
function followLog(p: Process) {
  logAbort?.abort();
  const abort = new AbortController();
  logAbort = abort;
  const url = `/api/playground/processes/logs?sessionId=${encodeURIComponent(sessionId)}&id=${encodeURIComponent(p.id)}`;
  let reloaded = false;
  stream(url, {}, (event, data) => {
    if (event === "output") {
      print(data.data);
      if (!reloaded && /listen/i.test(data.data)) {
        reloaded = true;
        setPreview();
      }
    } else if (event === "exit") {
      const how = stopped.has(data.id) ? "stopped" : "ended";
      print(`[${data.command} ${how}: exit ${data.exitCode ?? "?"}]\n`, data.exitCode === 0 || how === "stopped" ? "info" : "err");
      if (project?.id === data.id) setProject(null);
    }
  }, abort.signal).catch((err) => {
    if (!abort.signal.aborted) showError("process log", err);
  });
}

const stopped = new Set<string>(); // processes the user stopped: their exit is no failure

async function stopProject() {
  if (!project) return;
  stopped.add(project.id);
  try {
    await api.kill(sessionId, project.id);
    setProject(null);
  } catch (err) {
    showError("stop", err);
  }
}

/** After a reload: follow the newest running `npm start`, if any. */
async function reattachProject() {
  try {
    const { processes } = await api.processes(sessionId);
    const p = processes.filter((x) => x.running && x.command === "npm start").pop();
    setProject(p || null);
    if (p) {
      print(`(following ${p.id}: ${p.command})\n`, "info");
      followLog(p);
    }
  } catch (err) {
    showError("processes", err);
  }
}

async function install(specs: string) {
  const packages = specs.split(/\s+/).filter(Boolean);
  const btn = $("install") as HTMLButtonElement;
  btn.disabled = true;
  print(`$ npm install ${packages.join(" ") || "(package.json)"}\n`, "info");
  try {
    const r = await api.install(sessionId, packages);
    if (r.output) print(r.output);
    if (r.error) print(r.error, r.success ? "out" : "err");
    const names = (r.installed || []).map((p) => `${p.name}@${p.version}`).join(", ");
    print(r.success ? `[installed ${names || "nothing"} in ${r.durationMs} ms]\n` : runSummary(r), r.success ? "info" : "err");
    await loadFiles();
  } catch (err) {
    showError("install", err);
  } finally {
    btn.disabled = false;
  }
}

// ---- preview ----

function previewURL() {
  return info?.previewUrl || `/p/${encodeURIComponent(sessionId)}/`;
}

function setPreview() {
  if (!sessionId) return;
  const url = previewURL();
  const frame = $("preview") as HTMLIFrameElement;
  frame.src = url; // setting src navigates again even when it is unchanged
  ($("preview-open") as HTMLAnchorElement).href = url;
}

/** The preview's own status line: what the session's server answers at its root. */
async function probePreview() {
  const el = $("preview-status");
  const url = previewURL();
  if (!sessionId || !url.startsWith("/")) {
    el.textContent = "";
    return;
  }
  try {
    const res = await fetch(url, { cache: "no-store" });
    el.textContent = `${res.status} ${res.statusText}`;
    el.dataset.status = String(res.status);
  } catch (err) {
    el.textContent = (err as Error).message;
    el.dataset.status = "error";
  }
}

// ---- terminal ----

function connectTerminal() {
  disconnectTerminal();
  if (!term) {
    term = new Terminal({ fontSize: 13, cursorBlink: true, theme: { background: "#1e2127" }, convertEol: false });
    fit = new FitAddon();
    term.loadAddon(fit);
    term.open($("terminal"));
    term.onData((d) => socket?.readyState === WebSocket.OPEN && socket.send(new TextEncoder().encode(d)));
    term.onResize(({ cols, rows }) =>
      socket?.readyState === WebSocket.OPEN && socket.send(JSON.stringify({ type: "resize", cols, rows })));
    new ResizeObserver(() => fit?.fit()).observe($("terminal"));
  }
  fit!.fit();
  term.reset();
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/api/playground/terminal?sessionId=${encodeURIComponent(sessionId)}&cols=${term.cols}&rows=${term.rows}`);
  ws.binaryType = "arraybuffer";
  socket = ws;
  const state = $("terminal-state");
  state.textContent = "connecting…";
  $("terminal-connect").hidden = true;
  ws.onopen = () => { state.textContent = "connected"; state.dataset.state = "open"; };
  ws.onmessage = (e) => {
    if (typeof e.data === "string") {
      const m = JSON.parse(e.data);
      if (m.type === "exit") term!.write(`\r\n[shell exited: ${m.exitCode}]\r\n`);
    } else {
      term!.write(new Uint8Array(e.data));
    }
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    state.textContent = "closed";
    state.dataset.state = "closed";
    $("terminal-connect").hidden = !sessionId;
  };
}

function disconnectTerminal() {
  const ws = socket;
  socket = null;
  ws?.close();
}

// ---- wiring ----

$("start-js").onclick = () => void start("js");
$("start-ts").onclick = () => void start("ts");
$("reset").onclick = () => void reset();
$("extend").onclick = () => void extend();
$("run-file").onclick = () => void runFile();
$("run-project").onclick = () => void runProject();
$("stop").onclick = () => void stopProject();
$("refresh-files").onclick = () => void loadFiles();
$("clear-output").onclick = () => { $("output").textContent = ""; };
$("preview-reload").onclick = () => setPreview();
$("preview").addEventListener("load", () => void probePreview());
$("terminal-connect").onclick = () => connectTerminal();
$("project-type").onchange = (e) => { store.projectType = (e.target as HTMLSelectElement).value; };
$("new-file-form").onsubmit = (e) => {
  e.preventDefault();
  const input = $("new-file-path") as HTMLInputElement;
  void addFile(input.value).then(() => { input.value = ""; });
};
$("install-form").onsubmit = (e) => {
  e.preventDefault();
  void install(($("install-packages") as HTMLInputElement).value);
};
document.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
    e.preventDefault();
    void runFile();
  }
  if ((e.ctrlKey || e.metaKey) && e.key === "s") {
    e.preventDefault();
    void flush();
  }
});
setInterval(updateDeadline, 1000);
setInterval(() => void checkGone(), pollMs);

void resume();
