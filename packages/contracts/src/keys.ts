/** Redis key and channel names, all under one configurable prefix. */
export interface KeyNames {
  prefix: string;
  /** BullMQ prefix for queue keys. */
  bullPrefix: string;
  blob(id: string): string;
  /** Redis stream of identify requests for the matchers (see match-stream.ts). */
  matchStream: string;
  replyChannel(gatewayId: string): string;
  heartbeat(role: HeartbeatRole, id: string): string;
  heartbeatPattern(role: HeartbeatRole): string;
  /** Sorted set of the ready processes of one role, scored by when they count as gone. */
  live(role: HeartbeatRole): string;
}

export type HeartbeatRole = 'worker' | 'matcher';

export function keyNames(prefix: string): KeyNames {
  return {
    prefix,
    bullPrefix: `${prefix}:bull`,
    blob: (id) => `${prefix}:blob:${id}`,
    matchStream: `${prefix}:match-requests`,
    replyChannel: (gatewayId) => `${prefix}:replies:${gatewayId}`,
    heartbeat: (role, id) => `${prefix}:heartbeat:${role}:${id}`,
    heartbeatPattern: (role) => `${prefix}:heartbeat:${role}:*`,
    live: (role) => `${prefix}:live:${role}`,
  };
}
