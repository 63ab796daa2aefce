// Config text to a document: YAML, or JSON (which YAML 1.2 reads too, with positions in its errors).

import { isAscii } from "node:buffer";
import { extname } from "node:path";
import { parseDocument } from "yaml";
import type { JsonText } from "./json-text.js";
import type { Config, Problem } from "./schema.js";
import { validateConfig, validateConfigAsync, validateJsonChangeAsync, type ServiceCache, type Validated } from "./validate.js";

/** JSON by the extension, else by the first character; YAML otherwise. */
function isJson(text: string, fileName: string): boolean {
  return isJsonBy(fileName, () => /^\s*[{[]/.test(text));
}

function isJsonBy(fileName: string, opensLikeJson: () => boolean): boolean {
  const ext = extname(fileName).toLowerCase();
  return ext === ".json" || (ext !== ".yaml" && ext !== ".yml" && opensLikeJson());
}

/** isJson's first-character test on ASCII bytes (\s there: tab, line feed, vertical tab, form feed, carriage return, space). */
function bytesOpenLikeJson(bytes: Buffer): boolean {
  let i = 0;
  while (i < bytes.length && (bytes[i] === 32 || (bytes[i]! >= 9 && bytes[i]! <= 13))) i++;
  return bytes[i] === 123 || bytes[i] === 91;
}

/** Parses YAML or JSON text (chosen by the extension, else by the first character). A syntax error becomes a Problem with its line and column. */
export function parseConfigText(text: string, fileName = "config"): { value: unknown } | { problems: Problem[] } {
  if (isJson(text, fileName)) {
    try {
      return { value: JSON.parse(text) as unknown };
    } catch (e) {
      return { problems: [jsonProblem(text, (e as Error).message)] };
    }
  }
  return parseYaml(text);
}

// V8 names a character offset for most JSON errors ("... in JSON at position 9"), and quotes the
// whole text for an unexpected token, which is cut here.
function jsonProblem(text: string, v8Message: string): Problem {
  const at = /\s+in JSON at position (\d+).*$/s.exec(v8Message);
  const message = `is not valid JSON: ${v8Message.replace(/\s+in JSON at position \d+.*$/s, "").replace(/, ".*" is not valid JSON$/s, "")}`;
  if (!at) return { path: "", message };
  const before = text.slice(0, Number(at[1]));
  const line = before.split("\n").length;
  return { path: "", message, line, column: before.length - before.lastIndexOf("\n") };
}

function parseYaml(text: string): { value: unknown } | { problems: Problem[] } {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      problems: doc.errors.map((err) => {
        const pos = err.linePos?.[0];
        const first = err.message.split("\n")[0] ?? err.message;
        const message = `is not valid YAML: ${first.replace(/ at line \d+, column \d+:?$/, "")}`;
        return pos ? { path: "", message, line: pos.line, column: pos.col } : { path: "", message };
      }),
    };
  }
  return { value: doc.toJS({ maxAliasCount: 100 }) as unknown };
}

/** Parse, then validate. */
export function loadConfigText(text: string, fileName = "config"): { config: Config } | { problems: Problem[] } {
  const parsed = parseConfigText(text, fileName);
  return "problems" in parsed ? parsed : validateConfig(parsed.value);
}

/** loadConfigText whose validation gives the event loop a turn now and then (the daemon's reloads).
 *  With a cache, a JSON text that changed only inside its services list is read only where it changed. */
export async function loadConfigTextAsync(text: string, fileName = "config", cache?: ServiceCache): Promise<Validated> {
  return loadAsync(text, isJson(text, fileName), fileName, cache);
}

/** loadConfigTextAsync for a file's bytes (UTF-8). An ASCII JSON text is compared with the cache's
 *  last one as bytes, and only what changed is decoded (json-text.ts); any other is decoded whole. */
export async function loadConfigBytesAsync(bytes: Buffer, fileName = "config", cache?: ServiceCache): Promise<Validated> {
  if (!isAscii(bytes)) return loadConfigTextAsync(bytes.toString("utf8"), fileName, cache);
  return loadAsync(bytes, isJsonBy(fileName, () => bytesOpenLikeJson(bytes)), fileName, cache);
}

/** `source` is the text, or its bytes when it is ASCII (kept by the cache for the next compare). */
async function loadAsync(source: JsonText, json: boolean, fileName: string, cache: ServiceCache | undefined): Promise<Validated> {
  const changed = cache && json ? await validateJsonChangeAsync(source, cache) : undefined;
  if (changed) return changed;
  const text = typeof source === "string" ? source : source.toString("latin1");
  const parsed = parseConfigText(text, fileName);
  if ("problems" in parsed) return parsed;
  return validateConfigAsync(parsed.value, cache, json ? text : undefined, typeof source === "string" ? undefined : source);
}

/** One line per problem: `/etc/wasp/config.yaml: services[2].ports[0].port is 70000; a port is 1-65535`. */
export function formatProblems(file: string, problems: readonly Problem[]): string[] {
  return problems.map((p) => {
    const where = p.line !== undefined ? `${file}:${p.line}:${p.column ?? 1}` : file;
    return `${where}: ${p.path ? `${p.path} ` : ""}${p.message}`;
  });
}
