// One executable: the CNI plugin when a runtime execs it (CNI_COMMAND set), otherwise the CLI
// (src/cli/, which runs `wasp daemon` too).
// Each path imports only its own modules, lazily: a CNI call never loads the daemon, the engine, the
// CLI or their dependencies. No top-level await: the single executable (dist/wasp) runs this file
// bundled as CommonJS.
async function main(): Promise<void> {
  if (process.env.CNI_COMMAND !== undefined) {
    const { runCni } = await import("./cni/index.js");
    await runCni();
  } else {
    // through daemon/index.js: the single executable loads that bundle only when it is needed
    const { runCli } = await import("./daemon/index.js");
    await runCli(process.argv.slice(2));
  }
}

void main();
