// The flow journal (src/daemon/flow-journal.ts): what one daemon writes, the next restores with its
// own service entry ids; nothing is written while no flow changed; of its two files the newer
// complete one is restored, so a daemon killed while writing one leaves the other.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packet, TCP } from "../../helpers/packets.js";
import { newEngine, clusterRoutes, commit, runOne } from "../pipeline/setup.js";
import { FlowJournal, journalFiles } from "../../../src/daemon/flow-journal.js";
import type { Engine } from "../../../src/engine/index.js";
import type { Model, ServiceEntry } from "../../../src/model/model.js";

const VIP = "10.96.0.10", CLIENT = "10.244.1.5", KEY = "the entry's key";

function engine(seed: number): Engine {
  const e = newEngine({ seed });
  commit(e, clusterRoutes().service({ vip: VIP, port: 80, proto: "tcp", id: 0, backends: [{ ip: "10.244.1.10", port: 8080 }] }));
  return e;
}
/** A model whose one entry has this id (the journal reads only the entries' keys and ids). */
const model = (id: number) => ({ services: new Map([[KEY, { id } as ServiceEntry]]) }) as unknown as Model;
const syn = (sport: number) => packet({ src: CLIENT, dst: VIP }, { proto: "tcp", sport, dport: 80, flags: TCP.SYN });
const turn = (file: string) => readFileSync(file).readUInt32LE(32);

describe("daemon: flow journal (two files in turn, written when flows changed)", () => {
  let dir: string, files: [string, string];
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), "wasp-journal-")); files = journalFiles(join(dir, "wasp.sock")); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const journal = (e: Engine, m: Model, now = 100) => new FlowJournal(files, () => e, () => m, () => now, (err) => { throw err; });

  it("the next daemon restores the flows with its own id for their service entry", () => {
    const a = engine(1);
    runOne(a, syn(40001), 100); runOne(a, syn(40002), 100);
    journal(a, model(0)).write();
    const b = engine(2);
    const r = journal(b, model(6)).restore();
    assert.deepEqual([r?.restored, r?.expired, r?.refused], [2, 0, 0]);
    assert.deepEqual([...b.flows()].map((f) => [f.sport, f.service]), [[40001, 7], [40002, 7]], "entry id 6 + 1, as the core stores it");
  });

  it("a write with no flow changed since the last writes nothing; a packet of a flow makes the next write", () => {
    const a = engine(1), j = journal(a, model(0));
    runOne(a, syn(40001), 100);
    j.write();
    for (const f of files) rmSync(f, { force: true });
    a.process(0, 105);
    j.write();
    assert.ok(files.every((f) => !existsSync(f)), "no file written");
    runOne(a, syn(40001), 106);   // the SYN again: the flow is seen
    j.write();
    assert.ok(files.some((f) => existsSync(f)), "a file written");
  });

  it("the files take turns; one cut off while being written (magic 0) leaves the older one to restore", () => {
    const a = engine(1), j = journal(a, model(0));
    runOne(a, syn(40001), 100);
    j.write();
    runOne(a, syn(40002), 101);
    j.write();
    const [older, newer] = turn(files[0]) < turn(files[1]) ? files : [files[1], files[0]];
    assert.equal(turn(newer), turn(older) + 1, "consecutive turns, one file each");
    const cut = readFileSync(newer);
    cut.writeUInt32LE(0, 0);
    writeFileSync(newer, cut);
    const b = engine(2);
    assert.equal(journal(b, model(0)).restore()?.restored, 1, "the older file's one flow");
    // the next daemon's first write goes over the file that is not the newer complete journal
    runOne(b, syn(40003), 102);
    journal(b, model(0)).write();
    assert.equal(turn(newer), turn(older) + 1, "written over the cut-off file, after the older one's turn");
    assert.equal(readFileSync(older).readUInt32LE(0), 0x46505357, "the older journal is untouched");
  });

  it("a journal of another version (one `flows` file, version 1) is removed with an error and restores nothing", () => {
    const v1 = Buffer.alloc(28 + 2);
    v1.writeUInt32LE(0x46505357, 0); v1.writeUInt32LE(1, 4); v1.writeUInt32LE(128, 8); v1.writeUInt32LE(2, 24); v1.write("{}", 28);
    writeFileSync(files[0], v1);
    const b = engine(2);
    assert.throws(() => journal(b, model(0)).restore(), /not a flow journal of this version/);
    assert.equal(existsSync(files[0]), false, "set aside");
    assert.equal(b.flowCount(), 0);
  });
});
