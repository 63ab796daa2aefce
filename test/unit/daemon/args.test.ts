// The kube-proxy-named flags of `wasp daemon` (parseDaemonArgs): what each sets, and the errors.
import { strict as assert } from "node:assert";
import { parseDaemonArgs, type DaemonOptions } from "../../../src/daemon/args.js";

const parse = (...a: string[]): DaemonOptions => {
  const o = parseDaemonArgs(a);
  assert.ok(!("error" in o), JSON.stringify(o));
  return o;
};

describe("wasp daemon: kube flags", () => {
  it("defaults: healthz on 0.0.0.0:10256 and metrics on 127.0.0.1:10249, as kube-proxy's", () => {
    const o = parse();
    assert.deepEqual([o.healthzHost, o.healthzPort, o.metricsHost, o.metricsPort], ["0.0.0.0", 10256, "127.0.0.1", 10249]);
  });

  it("io_uring: absent means 'where it works' (undefined), --io-uring requires it, --no-io-uring never; --cni-socket takes a path or \"\" for none", () => {
    assert.equal(parse().ioUring, undefined);
    assert.equal(parse("--io-uring").ioUring, true);
    assert.equal(parse("--no-io-uring").ioUring, false);
    assert.equal(parse().cniSocketPath, undefined);
    assert.equal(parse("--cni-socket", "/run/x/cni.sock").cniSocketPath, "/run/x/cni.sock");
    assert.equal(parse("--cni-socket", "").cniSocketPath, "");
  });

  it("kube-proxy's spellings: --kubeconfig, --hostname-override, --cluster-cidr and --service-cidr (dual-stack comma lists), --min-sync-period durations, bind addresses", () => {
    const o = parse("--kubeconfig", "/etc/k.conf", "--hostname-override=node-7", "--cluster-cidr=10.244.0.0/16,fd00:10:244::/56",
      "--service-cidr", "10.96.0.0/12", "--min-sync-period=1m30s", "--healthz-bind-address=[::]:10266", "--metrics-bind-address=0.0.0.0:9100");
    assert.equal(o.kubeconfig, "/etc/k.conf");
    assert.equal(o.hostnameOverride, "node-7");
    assert.deepEqual([o.clusterCIDR, o.clusterCIDRv6, o.serviceCIDR, o.serviceCIDRv6], ["10.244.0.0/16", "fd00:10:244::/56", "10.96.0.0/12", undefined]);
    assert.equal(o.minSyncPeriodMs, 90_000);
    assert.deepEqual([o.healthzHost, o.healthzPort, o.metricsHost, o.metricsPort], ["::", 10266, "0.0.0.0", 9100]);
    assert.equal(parse("--min-sync-period", "500ms").minSyncPeriodMs, 500);
    assert.equal(parse("--min-sync-period", "0").minSyncPeriodMs, 0);
    assert.equal(parse("--healthz-bind-address=").healthzHost, undefined, "an empty address turns healthz off");
    assert.deepEqual(parse("--nodeport-addresses=10.0.0.0/8, primary").nodePortAddresses, ["10.0.0.0/8", "primary"]);
  });

  it("bad values name the flag and the expected form", () => {
    const err = (...a: string[]) => { const o = parseDaemonArgs(a); assert.ok("error" in o, JSON.stringify(o)); return o.error; };
    assert.match(err("--min-sync-period", "1 sec"), /--min-sync-period is "1 sec"; expected a duration like 1s/);
    assert.match(err("--healthz-bind-address", "10256"), /--healthz-bind-address is "10256"; expected IP:PORT/);
    assert.match(err("--cluster-cidr", "fd00::/56"), /expected one IPv4 CIDR and at most one IPv6 CIDR/);
    assert.match(err("--config", "a.yaml", "--kubeconfig", "k"), /--config and --kubeconfig are two config sources; give one/);
    assert.match(err("--mode", "xdp"), /--mode is "xdp"; expected tun or tap/);
  });
});
