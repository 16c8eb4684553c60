// A small client of servcraftd's public API (README "API"): the page uses
// nothing else.

export interface FileEntry {
  name: string;
  type: "file" | "folder";
  path: string;
  content?: string;
  language?: string;
  binary?: boolean;
  truncated?: boolean;
}

export interface SessionInfo {
  containerId: string;
  projectType: string;
  isExtended: boolean;
  expiresAt: string;
  previewUrl?: string;
  exposedPort?: number;
}

export interface RunResult {
  success: boolean;
  output: string;
  error: string;
  exitCode?: number;
  timedOut?: boolean;
  stopped?: boolean;
  oomKilled?: boolean;
  truncated?: boolean;
  durationMs?: number;
}

export interface Process {
  id: string;
  command: string;
  running: boolean;
  exitCode: number | null;
}

/** An answer of the API that is not a success: its HTTP status and JSON error. */
export class APIError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string,
    readonly body: any,
  ) {
    super(message);
  }
}

const base = "/api/playground";

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  const res = await fetch(base + path, init);
  let data: any = {};
  try {
    data = await res.json();
  } catch {
    data = { error: `${res.status} ${res.statusText}` };
  }
  if (!res.ok) {
    throw new APIError(res.status, data.error || `${res.status} ${res.statusText}`, data.code || "", data);
  }
  return data as T;
}

const q = (sessionId: string) => "sessionId=" + encodeURIComponent(sessionId);

export const api = {
  create: (sessionId: string, projectType: string) =>
    call<SessionInfo>("POST", "/container", { sessionId, projectType }),
  get: (sessionId: string) => call<SessionInfo>("GET", "/container?" + q(sessionId)),
  extend: (sessionId: string) => call<SessionInfo>("PATCH", "/container", { sessionId }),
  destroy: (sessionId: string) => call<unknown>("DELETE", "/container?" + q(sessionId)),
  files: (sessionId: string) => call<{ files: FileEntry[] }>("GET", "/files?" + q(sessionId)),
  sync: (sessionId: string, files: unknown[]) => call<unknown>("POST", "/sync", { sessionId, files }),
  install: (sessionId: string, packages: string[], runId?: string) =>
    call<RunResult & { installed?: { name: string; version: string }[] }>("POST", "/install", { sessionId, packages, runId }),
  startBackground: (sessionId: string, command: string) =>
    call<{ pid: string; process: Process }>("POST", "/shell", { sessionId, command, background: true }),
  processes: (sessionId: string) => call<{ processes: Process[] }>("GET", "/processes?" + q(sessionId)),
  shell: (sessionId: string, command: string) => call<RunResult>("POST", "/shell", { sessionId, command }),
  kill: (sessionId: string, id: string) =>
    call<{ process: Process }>("DELETE", "/processes?" + q(sessionId) + "&id=" + encodeURIComponent(id)),
  /** Sends input to the open stdin of a run started with runId and stdinOpen; eof closes it. */
  sendStdin: (sessionId: string, runId: string, data: string, eof = false) =>
    call<{ bytes: number }>("POST", "/run/stdin", { sessionId, runId, data, eof }),
  /** Stops an execute or shell started with runId (its answer then says stopped). */
  stopRun: (sessionId: string, runId: string) =>
    call<{ stopped: boolean }>("DELETE", "/run?" + q(sessionId) + "&runId=" + encodeURIComponent(runId)),
};

/** One file or folder to write through /sync: a file's content is text unless encoding says base64. */
export interface Write {
  path: string;
  type: "file" | "folder";
  content?: string;
  encoding?: "base64";
}

/** The sync body for some writes: the nested FileNode tree /sync takes (merge mode never deletes). */
export function syncTree(writes: Write[]): unknown[] {
  const root: any[] = [];
  for (const w of writes) {
    const parts = w.path.split("/");
    let level = root;
    for (const name of parts.slice(0, -1)) {
      let folder = level.find((n) => n.name === name && n.type === "folder");
      if (!folder) level.push((folder = { name, type: "folder", children: [] }));
      level = folder.children;
    }
    const node: any = { name: parts[parts.length - 1], type: w.type };
    if (w.type === "folder") node.children = [];
    else node.content = w.content ?? "";
    if (w.encoding) node.encoding = w.encoding;
    level.push(node);
  }
  return root;
}

/** A word for /bin/sh: single-quoted. */
export const shellQuote = (s: string) => "'" + s.replace(/'/g, "'\\''") + "'";

/**
 * Reads a server-sent event stream (execute with Accept: text/event-stream,
 * process logs) and hands each event to onEvent. Resolves when the stream ends.
 */
export async function stream(
  url: string,
  init: RequestInit,
  onEvent: (event: string, data: any) => void,
  signal?: AbortSignal,
): Promise<void> {
  const headers = { ...(init.headers as Record<string, string>), Accept: "text/event-stream" };
  const res = await fetch(url, { ...init, headers, signal });
  if (!res.ok || !(res.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
    let data: any = {};
    try {
      data = await res.json();
    } catch {
      data = { error: `${res.status} ${res.statusText}` };
    }
    throw new APIError(res.status, data.error || `${res.status}`, data.code || "", data);
  }
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    // One read may hold hundreds of events: walk them by index, cut the buffer once.
    let start = 0, end: number;
    while ((end = buf.indexOf("\n\n", start)) >= 0) {
      dispatch(buf.slice(start, end), onEvent);
      start = end + 2;
    }
    buf = buf.slice(start);
  }
}

function dispatch(block: string, onEvent: (event: string, data: any) => void) {
  let event = "message";
  const data: string[] = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (data.length) onEvent(event, JSON.parse(data.join("\n")));
}
