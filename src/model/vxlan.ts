// The one number every part that sizes the overlay agrees on (CNI config, node config, doctor,
// daemon); a module of its own so the short-lived CNI plugin imports nothing else with it.

/** RFC 7348 VXLAN over IPv4: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50;
