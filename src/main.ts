// One executable: the CNI plugin when a runtime execs it (CNI_COMMAND set), otherwise the CLI
// (which runs `wasp daemon` too).
// Each path imports only its own modules, lazily: a CNI call never loads the daemon, the engine, the
// CLI or their dependencies. No top-level await: the single executable (dist/wasp) runs this file
// bundled as CommonJS.
async function main(): Promise<void> {
  if (process.env.CNI_COMMAND !== undefined) {
    const { runCni } = await import("./cni/index.js");
    await runCni();
  } else {
    const { runCli } = await import("./cli/index.js");
    await runCli(process.argv.slice(2));
  }
}

void main();
