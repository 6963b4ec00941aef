//! The errors the SDK rejects promises with. Invariant: every rejection from this package is an
//! `ImcloudError` subclass, so an app can tell the kinds apart with `instanceof` and show `message` to a
//! person as it is.

export class ImcloudError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The connection is not open (not yet, or no longer); the request was not sent. */
export class NotConnectedError extends ImcloudError {
  constructor(message = "not connected") {
    super(message);
  }
}

/** The connection closed while the request was in flight: it may or may not have been applied. */
export class ConnectionClosedError extends ImcloudError {}

/** No reply within the timeout: the request may or may not have been applied. */
export class TimeoutError extends ImcloudError {}

/** The server refused an op 4 command: `code` is minus the HTTP status, `errorCode` the IM error code. */
export class CommandError extends ImcloudError {
  readonly code: number;
  readonly errorCode: string | undefined;
  constructor(code: number, message: string, errorCode?: string) {
    super(message);
    this.code = code;
    this.errorCode = errorCode;
  }
  /** The HTTP status the same operation would have had. */
  get status(): number {
    return -this.code;
  }
}

/** The server refused a room operation (op 18): `code` is -400. */
export class RoomError extends ImcloudError {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

/**
 * An HTTP API call failed. `status` is the HTTP status (0 when the server could not be reached), `code`
 * the IM error code (`invalid_argument`, `forbidden`, …, or `network`), `message` the server's words.
 */
export class ApiError extends ImcloudError {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}
