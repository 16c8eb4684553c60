// The file tree: the listing (flat, in tree order) drawn as rows with
// collapsible folders, a dot on files with unsynced edits, and per-row
// rename and delete buttons. It only draws; main.ts acts on the clicks.
import { FileEntry } from "./api";

export interface TreeView {
  collapsed: Set<string>; // folders whose contents are hidden
  selected: string; // the folder new files, folders and uploads go into ("" is the root)
  open: string; // the file in the editor
  unsaved: Set<string>; // files with edits not synced yet
}

/** True when path lies inside folder (folder "" holds everything). */
export const inside = (path: string, folder: string) => folder === "" || path.startsWith(folder + "/");

export function renderTree(ul: HTMLElement, files: FileEntry[], v: TreeView) {
  const frag = document.createDocumentFragment();
  let hiddenUnder = "";
  for (const f of files) {
    if (hiddenUnder && inside(f.path, hiddenUnder)) continue;
    hiddenUnder = f.type === "folder" && v.collapsed.has(f.path) ? f.path : "";
    frag.appendChild(row(f, v));
  }
  ul.replaceChildren(frag);
}

function row(f: FileEntry, v: TreeView) {
  const li = document.createElement("li");
  const folder = f.type === "folder";
  li.className = `node ${f.type}`;
  li.classList.toggle("open", f.path === v.open);
  li.classList.toggle("selected", folder && f.path === v.selected);
  li.dataset.path = f.path;
  li.dataset.type = f.type;
  if (folder) li.dataset.collapsed = String(v.collapsed.has(f.path));
  if (v.unsaved.has(f.path)) li.dataset.unsaved = "true";
  li.title = f.path;
  li.style.paddingLeft = `${0.3 + (f.path.split("/").length - 1) * 0.9}em`;

  const twisty = span("twisty", folder ? (v.collapsed.has(f.path) ? "▸" : "▾") : "");
  const name = span("name", f.name);
  const mark = span("mark", "●");
  mark.title = "edits not synced yet";
  const actions = span("actions", "");
  actions.append(button("rename", "✎", `Rename or move ${f.path}`), button("delete", "✕", `Delete ${f.path}`));
  li.append(twisty, name, mark, actions);
  return li;
}

function span(className: string, text: string) {
  const s = document.createElement("span");
  s.className = className;
  s.textContent = text;
  return s;
}

function button(act: string, text: string, title: string) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "small act";
  b.dataset.act = act;
  b.textContent = text;
  b.title = title;
  return b;
}
