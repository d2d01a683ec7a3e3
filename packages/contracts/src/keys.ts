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
  /** Sorted set of the processes of one role with a heartbeat, scored by when it expires. */
  heartbeats(role: HeartbeatRole): string;
  /** The same for the processes that are ready. */
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
    heartbeats: (role) => `${prefix}:heartbeats:${role}`,
    live: (role) => `${prefix}:live:${role}`,
  };
}
