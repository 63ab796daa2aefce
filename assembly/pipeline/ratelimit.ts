// ICMP errors the core sends are rate-limited like the kernel's icmp_ratelimit: a token bucket,
// here 100 per second with a burst of 50, so a flood of oversized packets cannot become a flood.
const RATE_PER_SEC: u32 = 100, BURST: u32 = 50;
let tokens: u32 = BURST;
let last: u32 = 0;

export function allow(now: u32): bool {
  if (now != last) {
    const add = (now - last) * RATE_PER_SEC;
    tokens = add >= BURST || tokens + add >= BURST ? BURST : tokens + add;
    last = now;
  }
  if (tokens == 0) return false;
  tokens--;
  return true;
}
