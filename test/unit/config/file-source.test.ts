import { strict as assert } from "node:assert";
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileConfigSource, loadConfigFile, loadConfigText, type ConfigEvent } from "../../../src/config/index.js";

const valid = (port: number) =>
  `node: { name: n1, underlayIP: 10.99.0.1, podCIDR: 10.244.1.0/24 }\nservices:\n  - { name: web, clusterIP: 10.96.0.10, ports: [{ port: ${port} }] }\n`;

/** Collects a source's events and waits for the next one. */
class Events {
  private readonly queue: ConfigEvent[] = [];
  private waiter: ((e: ConfigEvent) => void) | undefined;
  readonly listener = (e: ConfigEvent) => {
    if (this.waiter) { const w = this.waiter; this.waiter = undefined; w(e); } else this.queue.push(e);
  };
  next(timeoutMs = 3000): Promise<ConfigEvent> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no config event within ${timeoutMs} ms`)), timeoutMs);
      this.waiter = (e) => { clearTimeout(t); resolve(e); };
    });
  }
  get pending(): number { return this.queue.length; }
}

/** What the daemon uses (src/daemon/config-sources.ts passes no options). */
const DEFAULT_DEBOUNCE = undefined;
const portOf = (e: ConfigEvent) => (e.kind === "config" ? e.config.services[0]!.ports[0]!.port : -1);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("config/file-source", () => {
  let dir: string;
  let source: FileConfigSource | undefined;
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), "wasp-cfg-")); });
  afterEach(async () => { source?.close(); source = undefined; await rm(dir, { recursive: true, force: true }); });

  /** A source watching `file` (config.yaml in the test's directory, written first with port 80
   *  unless it exists already), started, with its first event. */
  async function watching(debounceMs: number | undefined, file = join(dir, "config.yaml")): Promise<{ file: string; events: Events; first: ConfigEvent }> {
    await writeFile(file, valid(80), { flag: "wx" }).catch(() => undefined);
    const events = new Events();
    source = new FileConfigSource(file, { debounceMs });
    source.start(events.listener);
    return { file, events, first: await events.next() };
  }

  it("loads a file once: a valid one gives the config, a missing one a sentence with the errno", async () => {
    const file = join(dir, "config.yaml");
    await writeFile(file, valid(80));
    const r = await loadConfigFile(file);
    assert.ok("config" in r, `the valid file loads: ${JSON.stringify(r)}`);
    const missing = await loadConfigFile(join(dir, "nope.yaml"));
    assert.deepEqual(missing, { problems: [{ path: "", message: "cannot be read: no such file (ENOENT)" }] });
  });

  it("reports valid, then rejected, then valid versions written in place and by atomic rename", async () => {
    const { file, events, first } = await watching(30);
    assert.equal(portOf(first), 80);

    await writeFile(file, valid(70000)); // in place
    const rejected = await events.next();
    assert.equal(rejected.kind, "rejected");
    assert.deepEqual(rejected.kind === "rejected" && rejected.problems.map((p) => p.path), ["services[0].ports[0].port"]);

    // As editors and kubectl-style writers do: write a temp file, rename it over the config.
    await writeFile(join(dir, ".config.yaml.tmp"), valid(81));
    await rename(join(dir, ".config.yaml.tmp"), file);
    assert.equal(portOf(await events.next()), 81);

    await writeFile(join(dir, ".config.yaml.tmp"), valid(82));
    await rename(join(dir, ".config.yaml.tmp"), file);
    assert.equal(portOf(await events.next()), 82);
  });

  it("follows a ConfigMap volume update: the ..data symlink swapped to a new directory, as kubelet's atomic writer does", async () => {
    await mkdir(join(dir, "..v1"));
    await writeFile(join(dir, "..v1", "config.yaml"), valid(80));
    await symlink("..v1", join(dir, "..data"));
    await symlink("..data/config.yaml", join(dir, "config.yaml"));
    const events = new Events();
    source = new FileConfigSource(join(dir, "config.yaml"), { debounceMs: 30 });
    source.start(events.listener);
    assert.equal(portOf(await events.next()), 80);
    await mkdir(join(dir, "..v2"));
    await writeFile(join(dir, "..v2", "config.yaml"), valid(86));
    await symlink("..v2", join(dir, "..data_tmp"));
    await rename(join(dir, "..data_tmp"), join(dir, "..data"));
    await rm(join(dir, "..v1"), { recursive: true });
    assert.equal(portOf(await events.next()), 86);
  });

  it("reports a burst of writes once, with the last content", async () => {
    const { file, events } = await watching(80);
    for (const port of [90, 91, 92, 93]) await writeFile(file, valid(port));
    assert.equal(portOf(await events.next()), 93);
    await sleep(300);
    assert.equal(events.pending, 0);
  });

  it("under 20 rewrites a second for 4 s (default timing), every write is reported within 500 ms and the last one wins", async function () {
    this.timeout(20_000);
    const { file, events } = await watching(DEFAULT_DEBOUNCE);
    const seen: Array<{ ms: number; port: number }> = [];
    let doneMs = Infinity;
    const record = (async () => {
      while (performance.now() - doneMs < 1500) {
        const e = await events.next(100).catch(() => undefined);
        if (e) seen.push({ ms: performance.now(), port: portOf(e) });
      }
    })();
    // kubectl-style: each version written to a temp file and renamed over the config
    const written: Array<{ ms: number; port: number }> = [];
    const start = performance.now();
    for (let i = 0; performance.now() - start < 4000; i++) {
      const port = 1000 + i;
      await writeFile(join(dir, ".config.yaml.tmp"), valid(port));
      await rename(join(dir, ".config.yaml.tmp"), file);
      written.push({ ms: performance.now(), port });
      await sleep(50);
    }
    doneMs = performance.now();
    await record;
    const late = written.map((w) => {
      const got = seen.find((s) => s.port >= w.port);
      return { port: w.port, ms: got ? got.ms - w.ms : Infinity };
    });
    const worst = late.reduce((a, b) => (b.ms > a.ms ? b : a));
    assert.ok(worst.ms <= 500, `write of port ${worst.port} was reported after ${worst.ms.toFixed(0)} ms (${seen.length} events for ${written.length} writes)`);
    assert.equal(seen.at(-1)?.port, written.at(-1)!.port, "the last write is the last config reported");
    assert.ok(seen.every((s, i) => i === 0 || s.port > seen[i - 1]!.port), "versions are reported in order, never an older one after a newer");
  });

  it("does not report a rewrite that changes nothing", async () => {
    const { file, events } = await watching(30);
    await writeFile(file, valid(80));
    await sleep(250);
    assert.equal(events.pending, 0);
  });

  it("reports a deleted file as rejected and its return as a config", async () => {
    const { file, events } = await watching(30);
    await rm(file);
    const gone = await events.next();
    assert.equal(gone.kind, "rejected");
    assert.match(gone.kind === "rejected" ? gone.problems[0]!.message : "", /ENOENT/);
    await writeFile(file, valid(84));
    assert.equal(portOf(await events.next()), 84);
  });

  it("a JSON file renamed into place again and again (growing, shrinking, rejected, rewritten unchanged, non-ASCII): each event is what validating its whole text gives, an unchanged rewrite none", async () => {
    const svc = (k: number, port = 80, ext?: string) => (ext ? { name: `s${k}`, type: "ExternalName", externalName: ext } : { name: `s${k}`, clusterIP: `10.96.0.${10 + k}`, ports: [{ port }] });
    const json = (services: object[]) => JSON.stringify({ node: { name: "n1", underlayIP: "10.99.0.1", podCIDR: "10.244.1.0/24" }, services }, null, 1);
    const five = [0, 1, 2, 3, 4].map((k) => svc(k));
    const texts = [
      json([svc(0), svc(1), svc(2)]),
      json(five),                                      // grows past the read buffer
      json([svc(0, 81), ...five.slice(1)]),            // the first service changed
      json([svc(0, 81), ...five.slice(1)]),            // the same again: not reported
      json([svc(0, 81), ...five.slice(1, 4), svc(4, 70000)]),   // rejected
      json([svc(0), svc(1, 82)]),                      // shrinks
      json([svc(0), svc(1, 82), svc(2, 0, "café.example")]),    // not ASCII
      json([svc(0), svc(1, 83), svc(2, 0, "café.example")]),
      json([svc(0, 81), ...five.slice(1)]),            // ASCII again, a text seen before
    ];
    const file = join(dir, "config.json");
    await writeFile(file, texts[0]!);
    const { events, first } = await watching(30, file);
    const want = (text: string) => {
      const r = loadConfigText(text, "config.json");
      return JSON.stringify("config" in r ? { kind: "config", config: r.config } : { kind: "rejected", problems: r.problems });
    };
    const shown = (e: ConfigEvent) => JSON.stringify(e.kind === "config" ? { kind: e.kind, config: e.config } : { kind: e.kind, problems: e.problems });
    assert.equal(shown(first), want(texts[0]!));
    for (let i = 1; i < texts.length; i++) {
      await writeFile(join(dir, ".config.json.tmp"), texts[i]!);
      await rename(join(dir, ".config.json.tmp"), file);
      if (texts[i] === texts[i - 1]) continue;   // the next event must be the next text's
      assert.equal(shown(await events.next()), want(texts[i]!), `text ${i}`);
    }
    assert.match(want(texts[4]!), /"rejected"/, "text 4 is a rejected one");
    await sleep(200);
    assert.equal(events.pending, 0, "one event per changed text");
  });

  it("refuses to start on a directory that does not exist, naming it and the errno", () => {
    source = new FileConfigSource(join(dir, "nope", "config.yaml"));
    assert.throws(() => source!.start(() => {}), /^Error: cannot watch .*nope for changes to .*config\.yaml: no such file \(ENOENT\)$/);
  });

  it("reports nothing after close()", async () => {
    const { file, events } = await watching(30);
    source!.close();
    await writeFile(file, valid(85));
    await sleep(200);
    assert.equal(events.pending, 0);
  });
});
