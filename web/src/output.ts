// The output pane. A run may print a mebibyte in thousands of chunks: each
// chunk is only queued, and the queue is rendered at most once per animation
// frame into a bounded view that keeps about the last maxLines lines. Whole
// lines go into blocks of blockLines lines that the browser lays out only
// when they scroll into view (content-visibility), the line not ended yet
// into a tail; nothing reads the layout but the one scroll to the end per
// frame. The whole output since the last clear (up to keepChars) stays
// available as plain text: "show all" opens it in a new tab, "download"
// saves it.

export type Kind = "out" | "err" | "info";

interface Piece {
  text: string;
  kind: Kind;
}

interface Block {
  el: HTMLElement;
  lines: number;
}

const longLine = 4000; // characters of one line the view shows; the rest is in "show all"
const blockLines = 100;
const linePx = 18; // the pane's line height (style.css), for the size of a block not laid out yet

export class OutputView {
  private pending: Piece[] = [];
  private tail: Piece[] = [];
  private blocks: Block[] = [];
  private shownLines = 0;
  private hiddenLines = 0;
  private endsLine = true;
  private frame = 0;
  private follow = true;
  private all: string[] = [];
  private allChars = 0;
  private droppedChars = 0;
  private readonly tailEl: HTMLElement;

  constructor(
    private readonly view: HTMLElement,
    private readonly more: HTMLElement,
    private readonly maxLines = 5000,
    private readonly keepChars = 16 << 20,
  ) {
    this.tailEl = document.createElement("div");
    this.tailEl.className = "tail";
    view.appendChild(this.tailEl);
    view.addEventListener("scroll", () => {
      this.follow = view.scrollTop + view.clientHeight >= view.scrollHeight - 8;
    });
  }

  /** Queues text for the next frame. */
  print(text: string, kind: Kind = "out") {
    if (!text) return;
    this.pending.push({ text, kind });
    this.endsLine = text.endsWith("\n");
    this.keep(text);
    this.schedule();
  }

  /** Prints text on a line of its own: after a newline when the output so far ends mid-line. */
  line(text: string, kind: Kind = "info") {
    this.print(this.endsLine ? text : "\n" + text, kind);
  }

  clear() {
    this.pending = [];
    this.tail = [];
    for (const b of this.blocks) b.el.remove();
    this.blocks = [];
    this.shownLines = this.hiddenLines = 0;
    this.endsLine = true;
    this.all = [];
    this.allChars = this.droppedChars = 0;
    this.follow = true;
    this.schedule();
  }

  /** Everything printed since the last clear (but what passed keepChars), as plain text. */
  blob(): Blob {
    const parts = this.droppedChars ? [`[${this.droppedChars} earlier characters dropped]\n`, ...this.all] : this.all;
    return new Blob(parts, { type: "text/plain;charset=utf-8" });
  }

  private keep(text: string) {
    this.all.push(text);
    this.allChars += text.length;
    while (this.allChars > this.keepChars && this.all.length > 1) {
      const old = this.all.shift()!;
      this.allChars -= old.length;
      this.droppedChars += old.length;
    }
  }

  // A hidden tab gets no animation frames: it renders four times a second so
  // that the queue stays short.
  private schedule() {
    if (this.frame) return;
    this.frame = document.hidden
      ? window.setTimeout(() => this.render(), 250)
      : requestAnimationFrame(() => this.render());
  }

  private render() {
    this.frame = 0;
    const [done, rest] = splitAtLastNewline(this.tail.concat(this.pending));
    this.pending = [];
    this.tail = merge(rest);
    if (done.length) this.addBlocks(done);
    fill(this.tailEl, this.tail);
    this.tailEl.hidden = this.tail.length === 0;
    this.renderMore();
    if (this.follow) this.view.scrollTop = this.view.scrollHeight;
  }

  private addBlocks(pieces: Piece[]) {
    const { kept, dropped } = lastLines(pieces, this.maxLines);
    this.hiddenLines += dropped;
    const frag = document.createDocumentFragment();
    for (const { pieces, lines } of blocks(kept, blockLines)) {
      const el = document.createElement("div");
      el.className = "block";
      el.style.containIntrinsicSize = `auto ${lines * linePx}px`;
      fill(el, merge(pieces));
      frag.appendChild(el);
      this.blocks.push({ el, lines });
      this.shownLines += lines;
    }
    this.view.insertBefore(frag, this.tailEl);
    while (this.blocks.length > 1 && this.shownLines - this.blocks[0].lines >= this.maxLines) {
      const old = this.blocks.shift()!;
      old.el.remove();
      this.shownLines -= old.lines;
      this.hiddenLines += old.lines;
    }
  }

  private renderMore() {
    this.more.hidden = this.hiddenLines === 0;
    this.more.textContent = `${this.hiddenLines.toLocaleString("en")} earlier lines not shown`;
  }
}

/** Splits pieces after their last newline: whole lines, and the rest of the line not ended yet. */
function splitAtLastNewline(pieces: Piece[]): [Piece[], Piece[]] {
  let i = pieces.length - 1;
  while (i >= 0 && !pieces[i].text.includes("\n")) i--;
  if (i < 0) return [[], pieces];
  const p = pieces[i];
  const at = p.text.lastIndexOf("\n") + 1;
  const done = pieces.slice(0, i);
  done.push({ text: p.text.slice(0, at), kind: p.kind });
  const rest = at < p.text.length ? [{ text: p.text.slice(at), kind: p.kind }] : [];
  return [done, rest.concat(pieces.slice(i + 1))];
}

/** The last max lines of pieces that end with a newline, and how many lines were left out. */
function lastLines(pieces: Piece[], max: number): { kept: Piece[]; dropped: number } {
  let lines = 0;
  for (let i = pieces.length - 1; i >= 0; i--) {
    const text = pieces[i].text;
    // The piece's last character is a newline only for the last piece; count from its end.
    let end = text.length;
    while ((end = text.lastIndexOf("\n", end - 1)) >= 0) {
      if (++lines > max) {
        const kept = [{ text: text.slice(end + 1), kind: pieces[i].kind }, ...pieces.slice(i + 1)];
        const total = pieces.reduce((n, p) => n + count(p.text, "\n"), 0);
        return { kept, dropped: total - max };
      }
      if (end === 0) break;
    }
  }
  return { kept: pieces, dropped: 0 };
}

/** Cuts pieces that end with a newline into runs of size lines (the last one may be shorter). */
function blocks(pieces: Piece[], size: number): { pieces: Piece[]; lines: number }[] {
  const out: { pieces: Piece[]; lines: number }[] = [];
  let group: Piece[] = [], lines = 0;
  for (const p of pieces) {
    let from = 0;
    for (let i = p.text.indexOf("\n"); i >= 0; i = p.text.indexOf("\n", i + 1)) {
      if (++lines < size) continue;
      group.push({ text: p.text.slice(from, i + 1), kind: p.kind });
      out.push({ pieces: group, lines });
      group = [];
      lines = 0;
      from = i + 1;
    }
    if (from < p.text.length) group.push({ text: p.text.slice(from), kind: p.kind });
  }
  if (group.length) out.push({ pieces: group, lines });
  return out;
}

/** Joins neighbouring pieces of the same kind. */
function merge(pieces: Piece[]): Piece[] {
  const out: Piece[] = [];
  for (const p of pieces) {
    const last = out[out.length - 1];
    if (last && last.kind === p.kind) last.text += p.text;
    else out.push({ ...p });
  }
  return out;
}

/** Replaces el's contents with one span per piece, lines over longLine characters cut. */
function fill(el: HTMLElement, pieces: Piece[]) {
  const frag = document.createDocumentFragment();
  for (const p of pieces) {
    const span = document.createElement("span");
    span.className = p.kind;
    span.textContent = clipLines(p.text);
    frag.appendChild(span);
  }
  el.replaceChildren(frag);
}

function clipLines(text: string) {
  if (text.length <= longLine) return text;
  return text.replace(new RegExp(`[^\\n]{${longLine + 1},}`, "g"),
    (m) => `${m.slice(0, longLine)}… [${(m.length - longLine).toLocaleString("en")} more characters: show all]`);
}

function count(text: string, ch: string) {
  let n = 0;
  for (let i = text.indexOf(ch); i >= 0; i = text.indexOf(ch, i + 1)) n++;
  return n;
}
