import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

/** Node's parser error code of request headers over its limit (16 KB by default). */
const HEADERS_TOO_LARGE = 'HPE_HEADER_OVERFLOW';
/** Node's error code of a request not received within the server's requestTimeout. */
const REQUEST_TIMEOUT = 'ERR_HTTP_REQUEST_TIMEOUT';

interface ClientError {
  status: number;
  code: string;
  message: string;
}

/**
 * Returns the JSON error for a request that Node's HTTP parser rejects before the app
 * receives it: 431 for headers over the limit, 408 for a request not received in time, and 400
 * for a malformed one.
 */
function describeClientError(error: NodeJS.ErrnoException, timeoutMs: number): ClientError {
  if (error.code === HEADERS_TOO_LARGE) {
    return {
      status: 431,
      code: 'INVALID_REQUEST',
      message:
        'the request line and headers are over the size limit (16 KB unless Node is started with --max-http-header-size); shorten the query string or the headers',
    };
  }
  if (error.code === REQUEST_TIMEOUT) {
    return {
      status: 408,
      code: 'REQUEST_TIMEOUT',
      message: `the request was not received within ${timeoutMs} ms (HTTP_REQUEST_TIMEOUT_MS); send it again`,
    };
  }
  return { status: 400, code: 'INVALID_REQUEST', message: 'the HTTP request is malformed' };
}

/**
 * Handles a server's 'clientError' event: writes the error as JSON, as for every other error
 * of the API, and closes the connection. Node's own response has an empty body. A
 * connection reset by the client, or one with a response under way, is closed silently.
 */
export function answerClientError(
  error: NodeJS.ErrnoException,
  socket: Duplex,
  timeoutMs: number,
  onError: (code: string) => void,
): void {
  const responding = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (error.code === 'ECONNRESET' || !socket.writable || responding?.headersSent) {
    socket.destroy();
    return;
  }
  const { status, code, message } = describeClientError(error, timeoutMs);
  onError(code);
  const body = JSON.stringify({ error: { code, message } });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}
