// The Kubernetes source's defaults for what the API does not hold, apart from source.ts so that the
// daemon's command line can name them without loading the API client (about 110 MiB of a daemon
// that reads a config file instead).
export const DEFAULT_SERVICE_CIDR = "10.96.0.0/12";
export const DEFAULT_CLUSTER_CIDR = "10.244.0.0/16";
export const DEFAULT_MIN_SYNC_PERIOD_MS = 1000;
