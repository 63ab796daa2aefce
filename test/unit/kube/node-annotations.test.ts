// This node's VXLAN endpoint as flannel publishes its own (flannel's pkg/backend/vxlan newSubnetAttrs:
// json.Marshal of {VNI, VtepMAC} with the MAC as net.HardwareAddr prints it, lowercase) and the merge
// patch that brings a Node's annotations there.
import { strict as assert } from "node:assert";
import { annotationPatch, vtepAnnotations } from "../../../src/kube/index.js";

describe("kube node annotations: this node's VXLAN endpoint in flannel's annotations", () => {
  const want = vtepAnnotations({ vni: 1, vtepMAC: "02:C0:A8:32:01:01", publicIP: "192.168.50.1" });

  it("spells backend-data as flannel's Go code marshals it, with backend-type vxlan, public-ip and kube-subnet-manager", () => {
    assert.deepEqual(want, {
      "flannel.alpha.coreos.com/backend-type": "vxlan",
      "flannel.alpha.coreos.com/backend-data": '{"VNI":1,"VtepMAC":"02:c0:a8:32:01:01"}',
      "flannel.alpha.coreos.com/public-ip": "192.168.50.1",
      "flannel.alpha.coreos.com/kube-subnet-manager": "true",
    });
  });

  it("patches only the annotations that differ, as an RFC 7386 merge patch of metadata.annotations; nothing when all agree", () => {
    assert.deepEqual(annotationPatch({}, want), { metadata: { annotations: want } });
    const moved = { ...want, "flannel.alpha.coreos.com/public-ip": "192.168.50.9" };
    assert.deepEqual(annotationPatch(moved, want), { metadata: { annotations: { "flannel.alpha.coreos.com/public-ip": "192.168.50.1" } } });
    assert.equal(annotationPatch(want, want), undefined);
  });
});
