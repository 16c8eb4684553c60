// The page's client of the session's TypeScript language server
// (GET /api/playground/lsp): it opens the socket on the first TypeScript
// file, keeps the server's copy of each open file in step (whole-text
// changes) and hands each file's diagnostics to the page.

/** One diagnostic of the server: a 0-based line and character range. */
export interface LSPDiagnostic {
  range: { start: { line: number; character: number }; end: { line: number; character: number } };
  severity?: number; // 1 error, 2 warning, 3 information, 4 hint
  code?: number | string;
  message: string;
}

export const isTypeScript = (path: string) => /\.(ts|tsx|mts|cts)$/.test(path);

const uriOf = (path: string) => "file:///workspace/" + path.split("/").map(encodeURIComponent).join("/");

export class LanguageClient {
  private ws: WebSocket | null = null;
  private ready = false;
  private queue: string[] = [];
  private versions = new Map<string, number>(); // open files: path → version
  private paths = new Map<string, string>(); // uri → path
  private nextId = 2; // 1 is initialize
  private pending = new Map<number, (result: any) => void>(); // requests waiting for their answer

  constructor(
    private sessionId: string,
    private onDiagnostics: (path: string, diagnostics: LSPDiagnostic[]) => void,
  ) {}

  /** Opens path (a TypeScript file) with its text; the server checks it from now on. */
  open(path: string, text: string) {
    if (!isTypeScript(path) || this.versions.has(path)) return;
    this.versions.set(path, 1);
    this.paths.set(uriOf(path), path);
    this.notify("textDocument/didOpen", {
      textDocument: { uri: uriOf(path), languageId: path.endsWith("x") ? "typescriptreact" : "typescript", version: 1, text },
    });
  }

  /** The new text of an open file. */
  change(path: string, text: string) {
    const v = this.versions.get(path);
    if (v === undefined) return this.open(path, text);
    this.versions.set(path, v + 1);
    this.notify("textDocument/didChange", { textDocument: { uri: uriOf(path), version: v + 1 }, contentChanges: [{ text }] });
  }

  /** A file that is gone (deleted, renamed, its tab closed). */
  close(path: string) {
    if (!this.versions.delete(path)) return;
    this.notify("textDocument/didClose", { textDocument: { uri: uriOf(path) } });
    this.onDiagnostics(path, []);
  }

  /** Asks the server about a position of an open file (completion, hover): its result, or null. */
  request(method: string, path: string, position: { line: number; character: number }): Promise<any> {
    if (!this.versions.has(path)) return Promise.resolve(null);
    const id = this.nextId++;
    const answer = new Promise<any>((resolve) => {
      this.pending.set(id, resolve);
      setTimeout(() => this.pending.delete(id) && resolve(null), 10_000); // a slow server: no answer
    });
    this.send(JSON.stringify({ jsonrpc: "2.0", id, method, params: { textDocument: { uri: uriOf(path) }, position } }));
    return answer;
  }

  /** Ends the socket and with it the session's language server. */
  dispose() {
    this.ws?.close();
    this.ws = null;
  }

  private notify(method: string, params: unknown) {
    this.send(JSON.stringify({ jsonrpc: "2.0", method, params }));
  }

  private send(msg: string) {
    this.connect();
    if (this.ready) this.ws!.send(msg);
    else this.queue.push(msg);
  }

  private connect() {
    if (this.ws) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/api/playground/lsp?sessionId=${encodeURIComponent(this.sessionId)}`);
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({
        jsonrpc: "2.0", id: 1, method: "initialize",
        params: {
          processId: null, rootUri: "file:///workspace",
          capabilities: { textDocument: { publishDiagnostics: {}, completion: { completionItem: {} }, hover: { contentFormat: ["plaintext", "markdown"] } } },
        },
      }));
    };
    ws.onmessage = (e) => {
      const msg = JSON.parse(e.data as string);
      if (msg.id === 1 && !this.ready) {
        this.ready = true;
        ws.send(JSON.stringify({ jsonrpc: "2.0", method: "initialized", params: {} }));
        for (const m of this.queue.splice(0)) ws.send(m);
      } else if (msg.id !== undefined && !msg.method && this.pending.has(msg.id)) {
        const resolve = this.pending.get(msg.id)!;
        this.pending.delete(msg.id);
        resolve(msg.error ? null : msg.result);
      } else if (msg.method === "textDocument/publishDiagnostics") {
        const path = this.paths.get(msg.params.uri);
        if (path && this.versions.has(path)) this.onDiagnostics(path, msg.params.diagnostics);
      } else if (msg.id !== undefined && msg.method) {
        ws.send(JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: null })); // a request of the server's: nothing to say
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      // Reopen on the next change with every open file again.
      this.ws = null;
      this.ready = false;
      this.queue = [];
      this.versions.clear();
      for (const resolve of this.pending.values()) resolve(null);
      this.pending.clear();
    };
  }
}

/** An LSP position of offset pos in a document of lines. */
export function lspPosition(doc: { lineAt(pos: number): { number: number; from: number } }, pos: number) {
  const line = doc.lineAt(pos);
  return { line: line.number - 1, character: pos - line.from };
}

/** The text of a hover's contents (MarkupContent, MarkedString or an array of them). */
export function hoverText(contents: any): string {
  if (!contents) return "";
  if (typeof contents === "string") return contents;
  if (Array.isArray(contents)) return contents.map(hoverText).filter(Boolean).join("\n\n");
  return contents.value || "";
}

/** CodeMirror's completion type of an LSP CompletionItemKind. */
export function completionType(kind?: number): string {
  const types: Record<number, string> = { 2: "method", 3: "function", 4: "function", 5: "property", 6: "variable", 7: "class",
    8: "interface", 9: "namespace", 10: "property", 13: "enum", 14: "keyword", 20: "enum", 21: "constant", 22: "class", 25: "type" };
  return kind ? types[kind] || "text" : "text";
}
