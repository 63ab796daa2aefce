// deploy/: every manifest validates against the Kubernetes OpenAPI schema (kubernetes-models, from the
// npm registry), the RBAC is exactly get/list/watch of what the source reads, the DaemonSet has what a
// node datapath needs, and the commands it runs are ones `wasp daemon` accepts.
import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { DaemonSet } from "kubernetes-models/apps/v1";
import { ClusterRole, ClusterRoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1";
import { ServiceAccount } from "kubernetes-models/v1";
import { parseDaemonArgs } from "../../../src/daemon/args.js";

const DEPLOY = new URL("../../../deploy", import.meta.url).pathname;
type Obj = Record<string, any>;

function docs(file: string): Obj[] {
  return parseAllDocuments(readFileSync(join(DEPLOY, file), "utf8")).map((d) => {
    assert.equal(d.errors.length, 0, `${file}: ${d.errors.map((e) => e.message).join("; ")}`);
    return d.toJS() as Obj;
  });
}

const MODELS: Record<string, new (o: Obj) => { validate(): void }> = {
  "v1/ServiceAccount": ServiceAccount as never,
  "rbac.authorization.k8s.io/v1/ClusterRole": ClusterRole as never,
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding": ClusterRoleBinding as never,
  "apps/v1/DaemonSet": DaemonSet as never,
};

function validate(o: Obj): void {
  const M = MODELS[`${o.apiVersion}/${o.kind}`];
  assert.ok(M, `no schema for ${o.apiVersion} ${o.kind}`);
  new M(o).validate();
}

/** Kubernetes expands $(VAR) in a container's command from its env: do that with a node name. */
const expand = (args: string[]) => args.map((a) => a.replace("$(NODE_NAME)", "node-a"));

describe("deploy/ manifests", () => {
  const all = [...docs("rbac.yaml"), ...docs("daemonset.yaml")];
  const find = (kind: string) => all.find((o) => o.kind === kind) as Obj;

  it("every object validates against the Kubernetes API schema (kubernetes-models)", () => {
    assert.deepEqual(all.map((o) => o.kind), ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]);
    for (const o of all) validate(o);
  });

  it("the schema check can fail: a DaemonSet without a selector, a container port as text", () => {
    const ds = structuredClone(find("DaemonSet"));
    delete ds.spec.selector;
    assert.throws(() => validate(ds), /selector/);
    const ds2 = structuredClone(find("DaemonSet"));
    ds2.spec.template.spec.containers[0].ports[0].containerPort = "healthz";
    assert.throws(() => validate(ds2), /containerPort/);
  });

  it("RBAC is least privilege: get, list and watch of services, nodes and discovery.k8s.io endpointslices, patch of nodes (its own Node's VXLAN annotations), nothing else, bound to the DaemonSet's ServiceAccount", () => {
    const rules = (find("ClusterRole").rules as Obj[]).flatMap((r) =>
      (r.apiGroups as string[]).flatMap((g) => (r.resources as string[]).map((res) => `${g}/${res}:${[...(r.verbs as string[])].sort().join(",")}`)));
    assert.deepEqual(rules.sort(), ["/nodes:get,list,watch", "/nodes:patch", "/services:get,list,watch", "discovery.k8s.io/endpointslices:get,list,watch"]);
    const sa = find("ServiceAccount"), crb = find("ClusterRoleBinding"), ds = find("DaemonSet");
    assert.deepEqual(crb.roleRef, { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: find("ClusterRole").metadata.name });
    assert.deepEqual(crb.subjects, [{ kind: "ServiceAccount", name: sa.metadata.name, namespace: sa.metadata.namespace }]);
    assert.equal(ds.spec.template.spec.serviceAccountName, sa.metadata.name);
    assert.equal(ds.metadata.namespace, sa.metadata.namespace);
  });

  it("the DaemonSet runs on the host network, privileged, on every node whatever its taints, with the host paths a datapath and a CNI plugin (and the daemon answering its calls) need", () => {
    const spec = find("DaemonSet").spec.template.spec as Obj;
    assert.equal(spec.hostNetwork, true);
    assert.deepEqual(spec.tolerations, [{ operator: "Exists" }]);
    const c = spec.containers[0] as Obj;
    assert.equal(c.securityContext.privileged, true);
    const paths = Object.fromEntries((spec.volumes as Obj[]).map((v) => [v.name, v.hostPath.path]));
    assert.deepEqual(Object.values(paths).sort(), ["/dev/net/tun", "/etc/cni/net.d", "/opt/cni/bin", "/run/wasp", "/var/lib/cni", "/var/run/netns"]);
    const mounted = Object.fromEntries((c.volumeMounts as Obj[]).map((m) => [paths[m.name], m.mountPath]));
    assert.deepEqual(mounted, { "/dev/net/tun": "/dev/net/tun", "/run/wasp": "/run/wasp", "/var/lib/cni": "/var/lib/cni", "/etc/cni/net.d": "/etc/cni/net.d", "/opt/cni/bin": "/opt/cni/bin", "/var/run/netns": "/var/run/netns" });
    // the runtime makes a sandbox's netns after this pod started: it must propagate into the daemon's view
    assert.equal((c.volumeMounts as Obj[]).find((m) => m.mountPath === "/var/run/netns")?.mountPropagation, "HostToContainer");
    assert.equal(c.livenessProbe.httpGet.path, "/livez");
    assert.equal(c.livenessProbe.httpGet.port, 10256);
  });

  it("the commands are ones `wasp daemon` accepts: the init container installs the CNI plugin into the mounted host dirs, the daemon serves healthz on 10256", () => {
    const spec = find("DaemonSet").spec.template.spec as Obj;
    const init = spec.initContainers[0] as Obj, main = spec.containers[0] as Obj;
    for (const c of [init, main]) assert.deepEqual(c.command.slice(0, 2), ["/usr/local/bin/wasp", "daemon"]);
    const io = parseDaemonArgs(expand(init.command.slice(2)));
    assert.ok(!("error" in io), JSON.stringify(io));
    assert.equal(io.installCni, true);
    assert.equal(io.hostnameOverride, "node-a");
    const initMounts = (init.volumeMounts as Obj[]).map((m) => m.mountPath).sort();
    assert.deepEqual(initMounts, [io.cniConfDir, io.cniBinDir].sort());
    const mo = parseDaemonArgs(expand(main.command.slice(2)));
    assert.ok(!("error" in mo), JSON.stringify(mo));
    assert.equal(mo.installCni, undefined);
    assert.equal(mo.kubeconfig, undefined, "in-cluster config (KUBERNETES_SERVICE_HOST) in the pod");
    assert.equal(mo.configPath, undefined);
    assert.deepEqual([mo.healthzHost, mo.healthzPort, mo.metricsHost, mo.metricsPort], ["0.0.0.0", 10256, "127.0.0.1", 10249], "kube-proxy's defaults");
    for (const c of [init, main]) assert.deepEqual(c.env, [{ name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } }]);
  });

  it("kustomization.yaml lists both manifests", () => {
    const k = docs("kustomization.yaml")[0] as Obj;
    assert.deepEqual(k.resources, ["rbac.yaml", "daemonset.yaml"]);
  });
});
