// The Kubernetes API as a config source: Services, EndpointSlices and Nodes to the internal Config.
export {
  KubeConfigSource, loadKubeConfig, firstConfig, defaultNodeName, DEFAULT_SERVICE_CIDR, DEFAULT_CLUSTER_CIDR, DEFAULT_MIN_SYNC_PERIOD_MS,
  type KubeNodeSettings, type KubeSourceOptions, type KubeSourceStats,
} from "./source.js";
export {
  convertService, convertEndpointSlice, convertNode, joinService, peerOf, flannelVtepOf, SERVICE_NAME_LABEL, TO_BE_DELETED_TAINT, ZONE_LABEL, FLANNEL,
  type KubeService, type KubeSlice, type KubeNode, type SliceEndpoint, type ConvertContext, type FlannelVtep,
} from "./convert.js";
export { vtepAnnotations, annotationPatch, type OwnVtep } from "./node-annotations.js";
export { installCni, conflistFor, NATIVE_ADDON, type InstallCniOptions } from "./install-cni.js";
