import { EventEmitter } from 'node:events';

import type { StreamMode } from './protocol.js';

export interface StreamStatsEvents {
  /** Emitted once per result sent: milliseconds from the frame's arrival to its result. */
  frameLatency: [gatewayMs: number, mode: StreamMode];
}

/**
 * Counters of the stream endpoint for a metrics collector to read at scrape
 * time. Counters only grow; `connections` is a gauge of the streams open now.
 */
export class StreamStats extends EventEmitter<StreamStatsEvents> {
  connections = 0;
  connectionsOpened = 0;
  /** Upgrades rejected because of the connection limit or shutdown. */
  connectionsRejected = 0;
  framesReceived = 0;
  /** Frames that got a result message. */
  framesProcessed = 0;
  /** Frames replaced by a newer one before they were sent to a worker, or whose result was discarded for a slow client. */
  framesDropped = 0;
  /** Frames that got an error message: invalid image, no config yet, or a failed job. */
  framesFailed = 0;
  /** Streams closed with 1013 because the client read too slowly. */
  slowClientsClosed = 0;
  /** Streams terminated because the client missed a heartbeat. */
  unresponsiveClientsTerminated = 0;

  observeLatency(gatewayMs: number, mode: StreamMode): void {
    this.emit('frameLatency', gatewayMs, mode);
  }

  snapshot(): Record<string, number> {
    return {
      connections: this.connections,
      connectionsOpened: this.connectionsOpened,
      connectionsRejected: this.connectionsRejected,
      framesReceived: this.framesReceived,
      framesProcessed: this.framesProcessed,
      framesDropped: this.framesDropped,
      framesFailed: this.framesFailed,
      slowClientsClosed: this.slowClientsClosed,
      unresponsiveClientsTerminated: this.unresponsiveClientsTerminated,
    };
  }
}
