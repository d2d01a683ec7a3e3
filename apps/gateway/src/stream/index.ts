export { type FrameDispatcher, StreamConnection } from './connection.js';
export { type StreamOptions, readStreamOptions, streamOptionsFromConfig } from './options.js';
export {
  type ClientMessage,
  type ErrorMessage,
  type ResultMessage,
  type ServerMessage,
  type StreamMode,
  parseClientMessage,
} from './protocol.js';
export { FrameScheduler } from './scheduler.js';
export { STREAM_PATH, StreamServer, type StreamServerDeps, attachStreamServer } from './server.js';
export { StreamStats, type StreamStatsEvents } from './stats.js';
