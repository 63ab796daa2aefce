// This node's VXLAN endpoint, published on its Node as flannel publishes its own (flannel's
// pkg/subnet/kube AcquireLease): backend-type "vxlan", backend-data {"VNI":n,"VtepMAC":"..."},
// public-ip and kube-subnet-manager "true". Flannel nodes add a node to their overlay only from
// these annotations, and wasp nodes take a peer's MAC from them (convert.ts, peerOf), so the MAC a
// node once published stays its MAC: the daemon reads it back at its next start, and a new
// underlay address does not change what peers have learned. Pure: the source sends the patch.

import { FLANNEL } from "./convert.js";

/** What this node publishes about its VXLAN endpoint. */
export interface OwnVtep {
  vni: number;
  vtepMAC: string;
  /** The underlay address its VXLAN packets come from. */
  publicIP: string;
}

/** The annotations that describe `v`, flannel's keys and spelling (Go's json.Marshal of its vxlanLeaseAttrs). */
export function vtepAnnotations(v: OwnVtep): Record<string, string> {
  return {
    [FLANNEL.backendType]: "vxlan",
    [FLANNEL.backendData]: JSON.stringify({ VNI: v.vni, VtepMAC: v.vtepMAC.toLowerCase() }),
    [FLANNEL.publicIP]: v.publicIP,
    [FLANNEL.kubeSubnetManager]: "true",
  };
}

/** The annotations of `want` that `have` lacks or holds otherwise, as the body of a JSON merge patch
 *  (RFC 7386) of the Node; undefined when the Node already says all of it. */
export function annotationPatch(have: Readonly<Record<string, string>>, want: Readonly<Record<string, string>>): { metadata: { annotations: Record<string, string> } } | undefined {
  const annotations: Record<string, string> = {};
  for (const [k, v] of Object.entries(want)) if (have[k] !== v) annotations[k] = v;
  return Object.keys(annotations).length > 0 ? { metadata: { annotations } } : undefined;
}
