// wasp doctor without --cni-conf-dir: the conflist dirs come from the runtimes' own configs (podman's
// containers.conf, containerd's config.toml), as those runtimes document their keys.
import assert from "node:assert/strict";
import { runtimeConfDirs } from "../../../src/cli/doctor.js";

/** A machine whose files are these (every other read fails, as for a file that is not there). */
const files = (m: Record<string, string>) => (f: string) => {
  if (m[f] === undefined) throw Object.assign(new Error(`ENOENT: ${f}`), { code: "ENOENT" });
  return m[f]!;
};

describe("doctor: the CNI config dirs the node's runtimes read", () => {
  it("no runtime config: /etc/cni/net.d alone", () => {
    assert.deepEqual(runtimeConfDirs({}, files({})), ["/etc/cni/net.d"]);
  });

  it("podman's network_config_dir ($CONTAINERS_CONF, then /etc/containers) and containerd's CRI conf_dir, each once, a trailing slash dropped; a commented key is not read", () => {
    const read = files({
      "/tmp/try/containers.conf": '[network]\nnetwork_backend = "cni"\nnetwork_config_dir = "/tmp/try/net.d/"\n',
      "/etc/containers/containers.conf": '[network]\n#network_config_dir = "/commented/out"\n',
      "/etc/containerd/config.toml": 'version = 2\n[plugins."io.containerd.grpc.v1.cri".cni]\n      bin_dir = "/opt/cni/bin"\n      conf_dir = "/srv/cni/net.d"\n',
    });
    assert.deepEqual(runtimeConfDirs({ CONTAINERS_CONF: "/tmp/try/containers.conf" }, read), ["/etc/cni/net.d", "/tmp/try/net.d", "/srv/cni/net.d"]);
  });

  it("a runtime pointed at /etc/cni/net.d adds nothing", () => {
    assert.deepEqual(runtimeConfDirs({}, files({ "/etc/containerd/config.toml": 'conf_dir = "/etc/cni/net.d"\n' })), ["/etc/cni/net.d"]);
  });
});
