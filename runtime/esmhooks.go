package runtime

import (
	"encoding/json"
	"net/url"
)

// A runner of the ES-module kind runs ES-module TypeScript that the daemon
// transformed (runtime/tsprogram). Node 20 runs ES modules only through
// its ES-module loader, so the runner is started with `--import` of a
// small module (esmRegisterSource) that registers module hooks
// (esmHooksSource) on node's hooks thread and keeps one end of a message
// channel to them under a global symbol. That costs about 30 ms, paid
// while the runner boots. When its program comes, the runner takes the
// channel's end off the global, posts the program's files and imports to
// the hooks, and runs the main file as node runs one (Module.runMain, which
// with an `--import` takes the ES-module loader, as under tsx). The hooks
// then resolve each relative import of a program file to the file the
// planner chose, and load each program file as its transformed source;
// everything else (packages, node's modules) goes on to node's own loader.
// They hold each request until the program has come; until then their end
// of the channel is referenced, so the hooks thread never finds its event
// loop empty while a request waits for it (node then ends the process with
// exit code 13, an unsettled top-level await: seen when the payload came
// late to a runner starved of CPU by a language server in its session).

// esmHooksPort is the global symbol's key under which the runner finds its
// end of the channel to the hooks.
const esmHooksPort = "servcraft.esm.hooks"

const esmHooksSource = `import{fileURLToPath as p,pathToFileURL as u}from"node:url";` +
	`let F={},I={},go;const got=new Promise(r=>go=r);` +
	`export function initialize(d){d.port.on("message",m=>{F=m.files;I=m.imports||{};go();d.port.unref()})}` +
	`export async function resolve(s,c,n){if(c.parentURL&&c.parentURL.startsWith("file:")){await got;` +
	`const t=(I[p(c.parentURL)]||{})[s];if(t!==undefined)return{url:u(t).href,format:"module",shortCircuit:true}}return n(s,c)}` +
	`export async function load(l,c,n){if(l.startsWith("file:")){await got;const s=F[p(l)];` +
	`if(s!==undefined)return{format:"module",source:s,shortCircuit:true}}return n(l,c)}`

var esmRegisterSource = `import{register}from"node:module";import{MessageChannel}from"node:worker_threads";` +
	`const c=new MessageChannel();c.port1.unref();` +
	`register(` + jsonString(dataURL(esmHooksSource)) + `,{data:{port:c.port2},transferList:[c.port2]});` +
	`globalThis[Symbol.for(` + jsonString(esmHooksPort) + `)]=c.port1;`

// esmHooksImport is what an ES-module runner is started with after `--import`.
var esmHooksImport = dataURL(esmRegisterSource)

// dataURL is a JavaScript module as a data: URL.
func dataURL(source string) string {
	return "data:text/javascript," + url.PathEscape(source)
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
