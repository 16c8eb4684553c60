// The playground page servcraftd serves at /: a session of its own (kept in
// localStorage, so a reload continues it), the session's files in a tree
// (folders that collapse; new file and folder, rename, delete, upload) and an
// editor with a tab per open file whose edits are synced, Run of a file and of
// `npm start` with output that never blocks the page, package installs, a
// terminal and the preview. Built only on the public API.
import { EditorView, basicSetup } from "codemirror";
import { EditorState } from "@codemirror/state";
import { javascript } from "@codemirror/lang-javascript";
import { json } from "@codemirror/lang-json";
import { oneDark } from "@codemirror/theme-one-dark";
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import "@xterm/xterm/css/xterm.css";
import "./style.css";
import { api, APIError, shellQuote, stream, syncTree, FileEntry, SessionInfo, Process, RunResult } from "./api";
import { OutputView } from "./output";
import { LanguageClient, LSPDiagnostic, completionType, hoverText, isTypeScript, lspPosition } from "./lsp";
import { setDiagnostics, Diagnostic } from "@codemirror/lint";
import { CompletionContext, CompletionResult } from "@codemirror/autocomplete";
import { hoverTooltip } from "@codemirror/view";
import type { Extension } from "@codemirror/state";
import { inside, renderTree } from "./tree";

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
  get tabs(): string[] { return list(localStorage.getItem("servcraft.tabs")); },
  set tabs(v: string[]) { localStorage.setItem("servcraft.tabs", JSON.stringify(v)); },
  get collapsed(): string[] { return list(localStorage.getItem("servcraft.collapsed")); },
  set collapsed(v: string[]) { localStorage.setItem("servcraft.collapsed", JSON.stringify(v)); },
};

/** A list of strings kept in localStorage; anything else is an empty list. */
function list(json: string | null): string[] {
  try {
    const v = JSON.parse(json || "[]");
    return Array.isArray(v) ? v.filter((x) => typeof x === "string") : [];
  } catch {
    return [];
  }
}

let sessionId = "";
let info: SessionInfo | null = null;
let files: FileEntry[] = [];
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

const output = new OutputView($("output"), $("output-hidden"));
const print = (text: string, kind: "out" | "err" | "info" = "out") => output.print(text, kind);

function showError(what: string, err: unknown) {
  if (err instanceof APIError && err.status === 404) void checkGone();
  output.line(`${what}: ${err instanceof Error ? err.message : String(err)}\n`, "err");
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
  store.tabs = [];
  await enter(id);
  output.line(`Session ready (${projectType}). ▶ Run file runs the open file (Ctrl+Enter); ▶ npm start runs the project ` +
    `in the background, shown in the preview. A package missing? Install it (an empty field installs package.json's).\n`, "info");
}

/** Attaches the page to an existing session: files, processes, terminal, preview. */
async function enter(id: string) {
  sessionId = id;
  lsp?.dispose();
  lsp = new LanguageClient(id, applyDiagnostics); // its socket opens with the first TypeScript file
  $("session-label").textContent = id;
  $("session-label").title = `sessionId ${id} (${info?.projectType})`;
  output.clear();
  updateDeadline();
  selectedFolder = "";
  await loadFiles();
  restoreTabs();
  setState("ready");
  connectTerminal();
  await reattachProject();
  if (project) setPreview();
  else previewIdle("nothing serves yet: ▶ npm start, or Run a file that listens");
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
    output.line(`deadline extended to ${new Date(r.expiresAt).toLocaleTimeString()}\n`);
  } catch (err) {
    showError("keep alive", err);
  }
}

// ---- files, tabs and the editor ----

/** An open file: its editor state (kept while another tab shows) and whether its edits are synced. */
interface Tab {
  path: string;
  state: EditorState;
  readable: boolean;
  note: string; // why a file is not editable here
  edits: number; // changes made
  synced: number; // of those, how many the last successful sync wrote
  queue: Promise<void>; // its syncs, one after another
  problems?: number; // type errors the language server found
}

let tabs: Tab[] = [];
let active: Tab | null = null;
const collapsed = new Set<string>(store.collapsed);
let selectedFolder = ""; // where new files, folders and uploads go; "" is the top

const unsaved = (t: Tab) => t.edits !== t.synced;
const stateOf = (t: Tab) => (t === active ? editor.state : t.state);

/** The session's language server: type errors of the open TypeScript files. */
let lsp: LanguageClient | null = null;
let lspTimer = 0;

/** Shows the server's diagnostics of path in its tab (underlined, the message on hover). */
function applyDiagnostics(path: string, diagnostics: LSPDiagnostic[]) {
  const tab = tabs.find((t) => t.path === path);
  if (!tab) return;
  const doc = stateOf(tab).doc;
  const pos = (p: { line: number; character: number }) => {
    const line = doc.line(Math.min(doc.lines, p.line + 1));
    return Math.min(line.to, line.from + p.character);
  };
  const severity = (s?: number) => (s === 1 ? "error" : s === 2 ? "warning" : "info") as Diagnostic["severity"];
  const marks: Diagnostic[] = diagnostics.map((d) => {
    const from = pos(d.range.start);
    return { from, to: Math.max(from, pos(d.range.end)), severity: severity(d.severity), message: d.message + (d.code ? ` (TS${d.code})` : "") };
  });
  if (tab === active) editor.dispatch(setDiagnostics(editor.state, marks));
  else tab.state = tab.state.update(setDiagnostics(tab.state, marks)).state;
  tab.problems = marks.filter((m) => m.severity === "error").length;
  if (tab === active) showProblems(tab);
}

/** Completion and hover from the language server, for a TypeScript file's editor. */
function languageFeatures(tab: Tab): Extension[] {
  if (!isTypeScript(tab.path)) return [];
  const sync = () => {
    clearTimeout(lspTimer); // the server gets the text as it is before it is asked
    lsp?.change(tab.path, stateOf(tab).doc.toString());
  };
  const complete = async (ctx: CompletionContext): Promise<CompletionResult | null> => {
    const word = ctx.matchBefore(/[\w$]*/);
    const afterDot = ctx.state.sliceDoc(Math.max(0, (word?.from ?? ctx.pos) - 1), word?.from ?? ctx.pos) === ".";
    if (!lsp || (!ctx.explicit && !afterDot && (!word || word.from === word.to))) return null;
    sync();
    const result = await lsp.request("textDocument/completion", tab.path, lspPosition(ctx.state.doc, ctx.pos));
    const items: any[] = Array.isArray(result) ? result : result?.items || [];
    if (!items.length) return null;
    return {
      from: word ? word.from : ctx.pos,
      options: items.slice(0, 500).map((i) => ({ label: i.label, type: completionType(i.kind), detail: i.detail, apply: i.insertText || i.label })),
      validFor: /^[\w$]*$/,
    };
  };
  const hover = hoverTooltip(async (_view, pos) => {
    if (!lsp) return null;
    sync();
    const result = await lsp.request("textDocument/hover", tab.path, lspPosition(stateOf(tab).doc, pos));
    const text = hoverText(result?.contents).replace(/^```\w*\n?|```$/gm, "").trim();
    if (!text) return null;
    return {
      pos, above: true,
      create: () => {
        const dom = document.createElement("pre");
        dom.className = "lsp-hover";
        dom.textContent = text;
        return { dom };
      },
    };
  });
  return [EditorState.languageData.of(() => [{ autocomplete: complete }]), hover];
}

function showProblems(tab: Tab | null) {
  const el = $("problems");
  const n = tab?.problems || 0;
  el.textContent = n ? `${n} type error${n > 1 ? "s" : ""}` : "";
  el.dataset.count = String(n);
}
const blank = EditorState.create({ doc: "", extensions: [basicSetup, oneDark, EditorState.readOnly.of(true)] });
const editor = new EditorView({ parent: $("editor"), state: blank });

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
  renderFiles();
}

function renderFiles() {
  renderTree($("tree"), files, {
    collapsed,
    selected: selectedFolder,
    open: active?.path || "",
    unsaved: new Set(tabs.filter(unsaved).map((t) => t.path)),
  });
  $("target-folder").textContent = selectedFolder ? selectedFolder + "/" : "/";
}

function renderTabs() {
  $("tabs").replaceChildren(...tabs.map(tabElement));
  $("open-file").textContent = active ? active.path + active.note : "";
}

function tabElement(t: Tab) {
  const el = document.createElement("div");
  el.className = "tab";
  el.classList.toggle("active", t === active);
  el.dataset.path = t.path;
  if (unsaved(t)) el.dataset.unsaved = "true";
  el.title = t.path;
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = t.path.slice(t.path.lastIndexOf("/") + 1);
  const mark = document.createElement("span");
  mark.className = "mark";
  mark.textContent = "●";
  mark.title = "edits not synced yet";
  const close = document.createElement("button");
  close.className = "close";
  close.textContent = "×";
  close.title = `Close ${t.path}`;
  el.append(name, mark, close);
  return el;
}

function newTab(f: FileEntry): Tab {
  const readable = f.content !== undefined && !f.binary && !f.truncated;
  const tab: Tab = {
    path: f.path, readable, note: readable ? "" : f.binary ? " (binary: not shown)" : " (too large to edit here)",
    edits: 0, synced: 0, queue: Promise.resolve(), state: blank,
  };
  tab.state = EditorState.create({
    doc: readable ? f.content! : "",
    extensions: [
      basicSetup, oneDark, languageFor(f.path), languageFeatures(tab),
      EditorState.readOnly.of(!readable), EditorView.editable.of(readable),
      EditorView.updateListener.of((u) => { if (u.docChanged) edited(tab); }),
    ],
  });
  return tab;
}

/** Shows path in the editor: its tab, opened when it is not yet. */
function openFile(path: string) {
  let tab = tabs.find((t) => t.path === path);
  if (!tab) {
    const f = files.find((x) => x.path === path && x.type === "file");
    if (!f) return;
    tab = newTab(f);
    tabs.push(tab);
    if (tab.readable) lsp?.open(tab.path, tab.state.doc.toString());
  }
  activate(tab);
}

function activate(tab: Tab | null) {
  if (active) active.state = editor.state;
  active = tab;
  editor.setState(tab ? tab.state : blank);
  saveTabs();
  showProblems(tab);
  setSync(tab && unsaved(tab) ? "pending" : "idle");
  renderTabs();
  renderFiles();
}

function saveTabs() {
  store.tabs = tabs.map((t) => t.path);
  store.openFile = active?.path || "";
}

/** Reopens the tabs the page had before a reload, the one it showed in front. */
function restoreTabs() {
  tabs = [];
  active = null;
  for (const path of store.tabs) {
    const f = files.find((x) => x.path === path && x.type === "file");
    if (f) tabs.push(newTab(f));
  }
  const want = store.openFile;
  const first = files.find((f) => f.path === want) || tabs[0] ||
    files.find((f) => /^src\/app\.[jt]s$/.test(f.path)) || files.find((f) => f.type === "file");
  if (first) openFile(first.path);
  else activate(null);
}

async function closeTab(tab: Tab) {
  await syncTab(tab);
  const i = tabs.indexOf(tab);
  if (i < 0 || unsaved(tab)) return; // a failed sync keeps the tab and its edits
  tabs.splice(i, 1);
  lsp?.close(tab.path);
  if (tab !== active) {
    saveTabs();
    renderTabs();
    return;
  }
  active = null;
  activate(tabs[Math.min(i, tabs.length - 1)] || null);
}

function edited(tab: Tab) {
  const was = unsaved(tab);
  tab.edits++;
  clearTimeout(lspTimer);
  lspTimer = window.setTimeout(() => lsp?.change(tab.path, stateOf(tab).doc.toString()), 300);
  if (tab === active) setSync("pending");
  if (!was) {
    renderTabs();
    renderFiles();
  }
  clearTimeout(syncTimer);
  syncTimer = window.setTimeout(() => void flush(), syncDelayMs);
}

/** Writes every tab with unsynced edits. */
async function flush() {
  clearTimeout(syncTimer);
  await Promise.all(tabs.filter(unsaved).map(syncTab));
}

/** Queues a write of tab: its syncs never overtake one another. */
function syncTab(tab: Tab): Promise<void> {
  tab.queue = tab.queue.then(() => writeTab(tab));
  return tab.queue;
}

async function writeTab(tab: Tab) {
  if (!unsaved(tab) || !sessionId || !tabs.includes(tab)) return;
  const edits = tab.edits, path = tab.path, content = stateOf(tab).doc.toString();
  if (tab === active) setSync("saving");
  try {
    await api.sync(sessionId, syncTree([{ path, type: "file", content }]));
    tab.synced = Math.max(tab.synced, edits);
    const f = files.find((x) => x.path === path);
    if (f) f.content = content;
    if (tab === active) setSync(unsaved(tab) ? "pending" : "saved");
  } catch (err) {
    if (tab === active) setSync("error");
    showError(`sync ${path}`, err);
  }
  renderTabs();
  renderFiles();
}

/** Unsynced edits still go out when the page is closed or reloaded. */
window.addEventListener("pagehide", () => {
  const writes = tabs.filter(unsaved).map((t) => ({ path: t.path, type: "file" as const, content: stateOf(t).doc.toString() }));
  if (!writes.length || !sessionId) return;
  const body = JSON.stringify({ sessionId, files: syncTree(writes) });
  void fetch("/api/playground/sync", { method: "POST", body, keepalive: true, headers: { "Content-Type": "application/json" } });
});

/** A name typed in the files pane, as a path in the selected folder. */
function targetPath(name: string) {
  name = name.trim().replace(/^\/+|\/+$/g, "");
  return name && selectedFolder ? `${selectedFolder}/${name}` : name;
}

/** Opens every folder above path. */
function reveal(path: string) {
  for (let i = path.indexOf("/"); i > 0; i = path.indexOf("/", i + 1)) collapsed.delete(path.slice(0, i));
  store.collapsed = [...collapsed];
}

async function addFile(name: string) {
  const path = targetPath(name);
  if (!path) return;
  try {
    if (!files.some((f) => f.path === path)) await api.sync(sessionId, syncTree([{ path, type: "file", content: "" }]));
    reveal(path);
    await loadFiles();
    openFile(path);
  } catch (err) {
    showError(`add ${path}`, err);
  }
}

async function addFolder(name: string) {
  const path = targetPath(name);
  if (!path) return;
  try {
    await api.sync(sessionId, syncTree([{ path, type: "folder" }]));
    reveal(path + "/");
    selectedFolder = path;
    await loadFiles();
  } catch (err) {
    showError(`add folder ${path}`, err);
  }
}

/** Runs a command for a file action; its failure is an error with what it printed. */
async function runShell(command: string) {
  const r = await api.shell(sessionId, command);
  if (!r.success) throw new Error((r.error || r.output).trim() || runSummary(r).trim());
}

/** Moves from to to (a file or a folder), folders made as needed; an existing to is refused. */
async function rename(from: string, to: string) {
  to = to.trim().replace(/^\/+|\/+$/g, "");
  if (!to || to === from) {
    renderFiles();
    return;
  }
  await flush();
  const dir = to.includes("/") ? to.slice(0, to.lastIndexOf("/")) : "";
  try {
    await runShell(`if [ -e ${shellQuote(to)} ] || [ -L ${shellQuote(to)} ]; then echo ${shellQuote(to + " already exists")} >&2; exit 1; fi; ` +
      (dir ? `mkdir -p -- ${shellQuote(dir)} && ` : "") + `mv -- ${shellQuote(from)} ${shellQuote(to)}`);
  } catch (err) {
    showError(`rename ${from}`, err);
    renderFiles();
    return;
  }
  const moved = (p: string) => (p === from || inside(p, from) ? to + p.slice(from.length) : p);
  for (const t of tabs) t.path = moved(t.path);
  const folds = [...collapsed].map(moved);
  collapsed.clear();
  folds.forEach((p) => collapsed.add(p));
  selectedFolder = moved(selectedFolder);
  reveal(to);
  saveTabs();
  output.line(`renamed ${from} → ${to}\n`);
  await loadFiles();
  renderTabs();
}

/** Deletes path (a folder with everything in it); its tabs close, their edits dropped. */
async function remove(path: string) {
  const closing = tabs.filter((t) => t.path === path || inside(t.path, path));
  tabs = tabs.filter((t) => !closing.includes(t));
  await Promise.all(closing.map((t) => t.queue)); // a write under way lands before the delete
  if (active && closing.includes(active)) {
    active = null;
    activate(tabs[0] || null);
  } else {
    saveTabs();
    renderTabs();
  }
  try {
    await runShell(`rm -rf -- ${shellQuote(path)}`);
    output.line(`deleted ${path}\n`);
  } catch (err) {
    showError(`delete ${path}`, err);
  }
  if (inside(selectedFolder, path) || selectedFolder === path) selectedFolder = "";
  await loadFiles();
}

function base64(file: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).replace(/^data:[^,]*,/, ""));
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

/** Writes the chosen files, bytes as they are, into the selected folder; their open tabs show the new content. */
async function upload(chosen: File[]) {
  const done: string[] = [];
  for (const file of chosen) {
    const path = targetPath(file.name);
    try {
      const content = await base64(file);
      await api.sync(sessionId, syncTree([{ path, type: "file", content, encoding: "base64" }]));
      output.line(`uploaded ${path} (${file.size} bytes)\n`);
      reveal(path);
      done.push(path);
    } catch (err) {
      showError(`upload ${path}`, err);
    }
  }
  await loadFiles();
  for (const path of done) reopen(path);
}

/** Replaces an open tab of path by the file as the listing now has it. */
function reopen(path: string) {
  const i = tabs.findIndex((t) => t.path === path);
  const f = files.find((x) => x.path === path && x.type === "file");
  if (i < 0 || !f) return;
  const wasActive = tabs[i] === active;
  tabs[i] = newTab(f);
  if (wasActive) {
    active = null;
    activate(tabs[i]);
  } else {
    renderTabs();
  }
}

function toggleFolder(path: string) {
  if (!collapsed.delete(path)) collapsed.add(path);
  store.collapsed = [...collapsed];
  selectedFolder = path;
  renderFiles();
}

function collapseAll() {
  for (const f of files) if (f.type === "folder") collapsed.add(f.path);
  store.collapsed = [...collapsed];
  renderFiles();
}

/** Turns a row's name into a field holding its path: Enter moves it there, Escape or leaving keeps it. */
function startRename(li: HTMLElement, path: string) {
  const input = document.createElement("input");
  input.className = "rename";
  input.value = path;
  input.spellcheck = false;
  li.querySelector(".name")!.replaceWith(input);
  input.focus();
  input.setSelectionRange(path.lastIndexOf("/") + 1, path.length);
  let done = false;
  const finish = (commit: boolean) => {
    if (done) return;
    done = true;
    if (commit) void rename(path, input.value);
    else renderFiles();
  };
  input.onkeydown = (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      finish(true);
    } else if (e.key === "Escape") {
      finish(false);
    }
  };
  input.onblur = () => finish(false);
  input.onclick = (e) => e.stopPropagation();
}

/** A delete button asks first: the second click within 3 s deletes. */
function armDelete(btn: HTMLElement, path: string) {
  if (btn.dataset.armed) {
    void remove(path);
    return;
  }
  btn.dataset.armed = "true";
  btn.textContent = "delete?";
  btn.title = `Click again to delete ${path} and everything in it`;
  setTimeout(() => {
    delete btn.dataset.armed;
    btn.textContent = "✕";
  }, 3000);
}

function onTreeClick(e: MouseEvent) {
  const target = e.target as HTMLElement;
  const li = target.closest<HTMLElement>("li[data-path]");
  if (!li) {
    selectedFolder = "";
    renderFiles();
    return;
  }
  const path = li.dataset.path!;
  const act = target.closest<HTMLElement>("[data-act]");
  if (act?.dataset.act === "rename") startRename(li, path);
  else if (act?.dataset.act === "delete") armDelete(act, path);
  else if (li.dataset.type === "folder") toggleFolder(path);
  else {
    selectedFolder = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
    openFile(path);
  }
}

function onTabClick(e: MouseEvent) {
  const target = e.target as HTMLElement;
  const tab = tabs.find((t) => t.path === target.closest<HTMLElement>(".tab")?.dataset.path);
  if (!tab) return;
  if (target.closest(".close") || e.button === 1) void closeTab(tab);
  else activate(tab);
}

// ---- running ----

function runSummary(r: RunResult & { signal?: string }) {
  const parts = [`exit ${r.exitCode ?? "?"}`];
  if (r.signal) parts.push(r.signal);
  if (r.timedOut) parts.push("timed out");
  if (r.stopped) parts.push("stopped");
  if (r.oomKilled) parts.push("out of memory");
  if (r.truncated) parts.push("output cut");
  if (r.durationMs !== undefined) parts.push(`${r.durationMs} ms`);
  return `[${parts.join(", ")}]\n`;
}

/** A program that starts a server: Run file runs it in the background, as npm start is. */
const serves = (code: string) => /\.listen\s*\(|\bcreateServer\s*\(|\bserve\s*\(\s*\{/.test(code);

async function runFile() {
  const tab = active;
  if (!tab || !tab.readable) return;
  await flush();
  if (serves(stateOf(tab).doc.toString())) {
    // A server never ends: in the background it serves the preview until Stop,
    // where an execute would be killed at its timeout.
    const ts = /\.(ts|mts|cts|tsx)$/.test(tab.path);
    await runProject(`${ts ? "tsx" : "node"} ${shellQuote(tab.path)}`);
    return;
  }
  const btn = $("run-file") as HTMLButtonElement;
  btn.disabled = true;
  output.line(`$ run ${tab.path}\n`);
  running = "run-" + Math.random().toString(36).slice(2, 10);
  updateStop();
  try {
    await stream("/api/playground/execute", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sessionId, code: stateOf(tab).doc.toString(), filename: tab.path, runId: running, stdinOpen: true }),
    }, (event, data) => {
      if (event === "stdout") print(data.data);
      else if (event === "stderr") print(data.data, "err");
      else if (event === "exit") output.line(runSummary(data), data.success ? "info" : "err");
      else if (event === "error") output.line(`${data.error}\n`, "err");
    });
  } catch (err) {
    showError("run", err);
  } finally {
    btn.disabled = false;
    running = null;
    updateStop();
  }
}

/** The runId of the file running now (Stop ends it first), or null. */
let running: string | null = null;
/** The runId of the npm install in flight (Stop ends it when no file runs), or null. */
let installing: string | null = null;

function updateStop() {
  ($("stdin-form") as HTMLFormElement).hidden = !running;
  const stop = $("stop") as HTMLButtonElement;
  stop.disabled = !project && !running && !installing;
  stop.title = running ? "Stop the running file" : installing ? "Stop the npm install" : "Kill the running npm start";
}

function setProject(p: Process | null) {
  project = p && p.running ? p : null;
  ($("run-project") as HTMLButtonElement).disabled = !!project;
  updateStop();
}

/** Starts command (npm start, or a file that serves) in the background, in place of the one running. */
async function runProject(command = "npm start") {
  await flush();
  try {
    if (project) {
      stopped.add(project.id);
      await api.kill(sessionId, project.id);
      setProject(null);
    }
    const r = await api.startBackground(sessionId, command);
    output.line(`$ ${command}  (${r.pid}, in the background: ■ Stop ends it)\n`);
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
      output.line(`[${data.command} ${how}: exit ${data.exitCode ?? "?"}]\n`, data.exitCode === 0 || how === "stopped" ? "info" : "err");
      if (project?.id === data.id) {
        setProject(null);
        previewIdle(`stopped: ${data.command} ${how} (exit ${data.exitCode ?? "?"})`);
      }
    }
  }, abort.signal).catch((err) => {
    if (!abort.signal.aborted) showError("process log", err);
  });
}

const stopped = new Set<string>(); // processes the user stopped: their exit is no failure

/** Typed input for the running file: the line, echoed in the output, or EOF. */
async function sendStdin(eof: boolean) {
  const input = $("stdin") as HTMLInputElement;
  if (!running) return;
  const data = eof ? "" : input.value + "\n";
  input.value = "";
  if (data) output.line(data, "info");
  try {
    await api.sendStdin(sessionId, running, data, eof);
  } catch (err) {
    showError("input", err);
  }
}

async function stopProject() {
  if (running || installing) {
    try {
      await api.stopRun(sessionId, (running || installing)!);
    } catch (err) {
      showError("stop", err);
    }
    return;
  }
  if (!project) return;
  const p = project;
  stopped.add(p.id);
  try {
    await api.kill(sessionId, p.id);
    setProject(null);
    previewIdle(`stopped: ${p.command} stopped`); // its log's exit may come before or after
  } catch (err) {
    showError("stop", err);
  }
}

/** After a reload: follow the newest running background process (npm start, a served file), if any. */
async function reattachProject() {
  try {
    const { processes } = await api.processes(sessionId);
    const p = processes.filter((x) => x.running).pop();
    setProject(p || null);
    if (p) {
      output.line(`(following ${p.id}: ${p.command})\n`);
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
  output.line(`$ npm install ${packages.join(" ") || "(package.json)"}\n`);
  installing = "install-" + Math.random().toString(36).slice(2, 10);
  updateStop();
  try {
    const r = await api.install(sessionId, packages, installing);
    if (r.output) print(r.output);
    if (r.error) print(r.error, r.success ? "out" : "err");
    const names = (r.installed || []).map((p) => `${p.name}@${p.version}`).join(", ");
    output.line(r.success ? `[installed ${names || "nothing"} in ${r.durationMs} ms]\n` : runSummary(r), r.success ? "info" : "err");
    await loadFiles();
  } catch (err) {
    showError("install", err);
  } finally {
    btn.disabled = false;
    installing = null;
    updateStop();
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

/** No server runs: the preview asks nothing of the session and says why. */
function previewIdle(why: string) {
  ($("preview") as HTMLIFrameElement).src = "about:blank"; // its load asks nothing: no project
  const el = $("preview-status");
  el.textContent = why;
  el.dataset.status = "idle";
}

/** The preview's own status line: what the session's server answers at its root. */
async function probePreview() {
  if (!project) return; // previewIdle said why; nothing is asked of the session
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
$("stdin-form").onsubmit = (e) => {
  e.preventDefault();
  void sendStdin(false);
};
$("stdin-eof").onclick = () => void sendStdin(true);
$("stdin").onkeydown = (e) => {
  if (e.key === "d" && e.ctrlKey) {
    e.preventDefault();
    void sendStdin(true);
  }
};
$("run-project").onclick = () => void runProject();
$("stop").onclick = () => void stopProject();
$("refresh-files").onclick = () => void loadFiles();
$("collapse-all").onclick = () => collapseAll();
$("tree").addEventListener("click", onTreeClick);
$("tabs").addEventListener("click", onTabClick);
$("tabs").addEventListener("auxclick", onTabClick);
$("clear-output").onclick = () => output.clear();
$("output-all").onclick = () => {
  const url = URL.createObjectURL(output.blob());
  window.open(url, "_blank");
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
};
$("output-download").onclick = (e) => {
  const a = e.currentTarget as HTMLAnchorElement;
  if (a.href.startsWith("blob:")) URL.revokeObjectURL(a.href);
  a.href = URL.createObjectURL(output.blob());
};
$("preview-reload").onclick = () => setPreview();
$("preview").addEventListener("load", () => void probePreview());
$("terminal-connect").onclick = () => connectTerminal();
$("project-type").onchange = (e) => { store.projectType = (e.target as HTMLSelectElement).value; };
$("new-file-form").onsubmit = (e) => {
  e.preventDefault();
  const input = $("new-file-path") as HTMLInputElement;
  void addFile(input.value).then(() => { input.value = ""; });
};
$("new-folder").onclick = () => {
  const input = $("new-file-path") as HTMLInputElement;
  void addFolder(input.value).then(() => { input.value = ""; });
};
$("upload").onclick = () => $("upload-input").click();
$("upload-input").onchange = (e) => {
  const input = e.target as HTMLInputElement;
  const chosen = Array.from(input.files || []);
  input.value = "";
  void upload(chosen);
};
$("install-form").onsubmit = (e) => {
  e.preventDefault();
  void install(($("install-packages") as HTMLInputElement).value);
};
// In the capture phase: the editor never sees these keys (its Mod-Enter would insert a line).
document.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
    e.preventDefault();
    e.stopPropagation();
    void runFile();
  }
  if ((e.ctrlKey || e.metaKey) && e.key === "s") {
    e.preventDefault();
    e.stopPropagation();
    void flush();
  }
}, { capture: true });
setInterval(updateDeadline, 1000);
setInterval(() => void checkGone(), pollMs);

void resume();
