// Types for weir-client.js (the JS file is the source of truth; its JSDoc says the same).

/** One item of a session's output (protocol.md §1). */
export interface WeirEvent<D = any> {
  /** 1, 2, 3, … contiguous per session; the resume cursor. */
  seq: number;
  /** `token`, `message`, `tool_call`, `tool_result`, `usage`, `status`, `input_request`, `input`, `error`, `end`, or a newer kind. */
  kind:
    | 'token' | 'message' | 'tool_call' | 'tool_result' | 'usage' | 'status'
    | 'input_request' | 'input' | 'error' | 'end' | (string & {});
  /** Producer wall clock in Unix milliseconds (a fraction allowed). */
  ts: number;
  /** Agent name, when known. */
  source?: string;
  /** Kind-specific payload: `{text}` for tokens, `{reason}` for end, `{code, message}` for error, … */
  data: D;
}

/**
 * The `data` of an operator broadcast: a `{"type":"notice","data":…}` frame (protocol.md §5, §7
 * `POST /v1/broadcast`). Whatever object the operator sent; the operator page sends `{text}`.
 * A notice is not an event: it has no seq, is never stored, and never moves `lastSeq`.
 */
export interface WeirNotice {
  /** The message, when the operator sent one as text. */
  text?: string;
  [key: string]: any;
}

/**
 * What an agent asks a person: an `input_request` event (protocol.md §9). Answer it with
 * `session.answer(req, data)` (or `thread.answer`).
 */
export interface WeirInputRequest {
  /** The request id, which an answer names. */
  id: string;
  /** What to ask. */
  prompt: string;
  /** JSON Schema that the answer's data must match. */
  schema?: any;
  /** The session that asks. */
  session: string;
  /** The seq of its `input_request` event. */
  seq: number;
}

/**
 * `idle` (not started) → `connecting` → `open` ⇄ `reconnecting` → `ended` | `failed` | `closed`.
 * `closed` means close() was called.
 */
export type WeirState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'ended' | 'failed' | 'closed';

export interface StateInfo {
  previous?: WeirState;
  /** Edge base URL in use, or about to be used. */
  url?: string;
  /** Node id from the server's hello. */
  node?: string;
  /** Consecutive unsuccessful attempts so far. */
  attempt?: number;
  /** Milliseconds until the next attempt (state `reconnecting`). */
  delay?: number;
  /** Close code of the connection that just ended. */
  closeCode?: number;
  /** Why the state changed. */
  reason?: string;
  /** Session status from the hello frame (`streaming`, `paused`, `completed`, …). */
  serverStatus?: string;
  /** The end event (state `ended`). */
  end?: WeirEvent;
  /** The error (state `failed`). */
  error?: WeirError;
}

export type WeirErrorCode =
  | 'unauthorized'
  | 'no_such_session'
  | 'history_expired'
  | 'frame_too_large'
  | 'unreachable'
  | 'token_refresh_failed'
  | 'http_error'
  | 'protocol'
  | 'handler'
  | 'bad_url'
  | 'bad_request'
  | 'not_found'
  | 'conflict'
  | 'run_active'
  | (string & {});

export class WeirError extends Error {
  constructor(
    code: string,
    message: string,
    extra?: { closeCode?: number; status?: number; fatal?: boolean; cause?: unknown; body?: unknown },
  );
  readonly name: 'WeirError';
  /** Stable machine-readable code. */
  code: WeirErrorCode;
  /** WebSocket close code, when the error came from a close. */
  closeCode?: number;
  /** HTTP status, for the HTTP helpers. */
  status?: number;
  /** True when this error made the session `failed`. */
  fatal: boolean;
  body?: unknown;
}

/** Close codes of protocol.md §5. */
export const CloseCode: Readonly<{
  DONE: 1000;
  TOO_LARGE: 1009;
  DRAINING: 1012;
  UNAUTHORIZED: 4001;
  NO_SUCH_SESSION: 4004;
  SLOW_CONSUMER: 4008;
  EXPIRED: 4010;
}>;

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface BackoffOptions {
  /** First retry waits up to this many ms (default 250). */
  initial?: number;
  /** Upper bound of any wait (default 10000). */
  max?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
}

export interface WeirSessionOptions {
  /** Session id. */
  session: string;
  /** Session token (JWT). When absent, getToken() supplies it. */
  token?: string;
  /** Edge base URLs (array or comma-separated), tried in rotation. Default: `[location.origin]`. */
  urls?: string | string[];
  /** Last seq already held (default 0, or the persisted one if larger). */
  after?: number;
  /** Called once after a 4001 (and when no token was given) for a fresh token; null/undefined ⇒ failed. */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** Keep lastSeq under `weir:<session>` so a page reload resumes. Default false. */
  persist?: 'sessionStorage' | 'localStorage' | StorageLike | false;
  /** The server's heartbeat interval in ms (default 15000); no frame for 2× this ⇒ reconnect. */
  heartbeatInterval?: number;
  /** Ms for a socket to open before the attempt is abandoned (default 10000). */
  connectTimeout?: number;
  /** Exponential backoff with full jitter between attempts. */
  backoff?: BackoffOptions;
  /** Consecutive failed attempts before `failed` with code `unreachable` (default Infinity). */
  maxAttempts?: number;
  /** Ack delivered events automatically: true = at most once a second, a number = that interval in ms. */
  autoAck?: boolean | number;
  /** WebSocket constructor (default globalThis.WebSocket). In Node < 22 pass `ws`. */
  WebSocket?: any;
  onEvent?: (ev: WeirEvent) => void;
  onState?: (state: WeirState, info: StateInfo) => void;
  onError?: (err: WeirError) => void;
  /** Called for each operator notice (broadcast); never changes lastSeq, acks or the persisted cursor. */
  onNotice?: (data: WeirNotice) => void;
  /** Called once for each input request that is open (not for one a replay shows answered). */
  onInputRequest?: (req: WeirInputRequest) => void;
  /** fetch implementation (default globalThis.fetch): answers over HTTP and checking a request against the log. */
  fetch?: typeof fetch;
  /** Source of randomness for jitter, [0, 1) (tests). */
  random?: () => number;
}

/**
 * One subscriber of one session: every event exactly once, in seq order, across reconnects,
 * edge failures and (with `persist`) page reloads.
 */
export class WeirSession implements AsyncIterable<WeirEvent> {
  constructor(opts: WeirSessionOptions);
  readonly session: string;
  token: string | undefined;
  readonly urls: string[];
  /** Last seq delivered: the resume cursor. */
  lastSeq: number;
  state: WeirState;
  /** Node id of the edge serving the current connection (from hello). */
  node: string | undefined;
  /** Session status from the last hello. */
  serverStatus: string | undefined;
  /** The `end` event, once delivered. */
  endEvent: WeirEvent | undefined;
  /** The error that made the session `failed`. */
  error: WeirError | undefined;
  /** Connections opened so far (hello received). */
  connections: number;
  /** The edge base URL of the current (or next) connection. */
  readonly url: string;
  /** True in `ended`, `failed` and `closed`. */
  readonly done: boolean;
  /** Resolves with the end event (undefined after close()); rejects with the WeirError on `failed`. */
  readonly finished: Promise<WeirEvent | undefined>;

  onEvent?: (ev: WeirEvent) => void;
  onState?: (state: WeirState, info: StateInfo) => void;
  onError?: (err: WeirError) => void;
  onNotice?: (data: WeirNotice) => void;
  onInputRequest?: (req: WeirInputRequest) => void;
  /** The input request the agent waits on, once announced; undefined when none is open. */
  readonly inputRequest: WeirInputRequest | undefined;

  /** Starts streaming; resolves on the first open (or end), rejects if the session fails first. */
  connect(): Promise<void>;
  /** Stops for good (state `closed`). */
  close(): void;
  /** Drops the connection and resumes (by default on the next URL, at once). */
  reconnect(opts?: { rotate?: boolean; delay?: number }): void;
  /** Acknowledges events up to seq (default lastSeq); monotonic. */
  ack(seq?: number): void;
  pause(): void;
  resume(): void;
  /** The session then ends with `end` reason `cancelled`. */
  cancel(): void;
  /**
   * Answers an input request: the WebSocket `input` frame while connected, else
   * `POST /v1/sessions/{id}/input`. Resolves once weir has the answer; rejects with a WeirError
   * `bad_request` (data not an object or not matching the schema), `not_found` (no such open
   * request) or `conflict` (already answered, or the session ended).
   */
  answer(request: WeirInputRequest | string, data: Record<string, any>): Promise<void>;
  on(type: 'event', fn: (ev: WeirEvent) => void): () => void;
  on(type: 'state', fn: (state: WeirState, info: StateInfo) => void): () => void;
  on(type: 'error', fn: (err: WeirError) => void): () => void;
  on(type: 'notice', fn: (data: WeirNotice) => void): () => void;
  on(type: 'input_request', fn: (req: WeirInputRequest) => void): () => void;
  /** Events from now on; connects if idle; ends after `end`; throws on failure; break closes. */
  events(): AsyncIterableIterator<WeirEvent>;
  [Symbol.asyncIterator](): AsyncIterableIterator<WeirEvent>;
}

export default WeirSession;

export interface CreatedSession {
  id: string;
  token: string;
  ws_url: string;
  events_url: string;
}

/** `POST <baseUrl>/v1/sessions` with `{agent, input}` (and `Authorization: Bearer <apiKey>`). */
export function createSession(
  baseUrl: string,
  opts?: { agent?: string; input?: unknown; id?: string; apiKey?: string; fetch?: typeof fetch; signal?: AbortSignal },
): Promise<CreatedSession>;

/** `GET <baseUrl>/v1/sessions/<id>/history`; with `all: true` follows `next_after` to the end. */
export function fetchHistory(
  baseUrl: string,
  session: string,
  opts?: { token?: string; after?: number; limit?: number; all?: boolean; fetch?: typeof fetch; signal?: AbortSignal },
): Promise<{ events: WeirEvent[]; next_after: number }>;

/** The WebSocket URL of a session on one edge (http→ws, https→wss). */
export function wsUrl(base: string, session: string, q?: { after?: number; token?: string }): string;

/** Full-jitter exponential backoff: uniform in [0, min(max, initial·factor^attempt)]. */
export function backoffDelay(attempt: number, opts?: BackoffOptions, random?: () => number): number;

/** `POST <baseUrl>/v1/threads` with `{agent, input, id}` (and `Authorization: Bearer <apiKey>`). */
export function createThread(
  baseUrl: string,
  opts?: { agent?: string; input?: unknown; id?: string; apiKey?: string; fetch?: typeof fetch; signal?: AbortSignal },
): Promise<{ id: string; token: string }>;

/** A run's input (protocol.md §9): the conversation so far, the front end's tools, the run's own input. */
export interface WeirRunInput {
  /** OpenAI chat messages: `{role: 'system'|'user'|'assistant'|'tool', content, tool_calls?, tool_call_id?, id?}`. */
  messages: Array<{ role: string; content: string; [key: string]: any }>;
  /** Tools the front end runs itself. */
  tools?: Array<{ name: string; description?: string; parameters?: any }>;
  /** This run's input; wins over the thread's, key by key. */
  input?: Record<string, any>;
}

export interface WeirThreadOptions extends Omit<WeirSessionOptions, 'session' | 'token' | 'urls' | 'getToken' | 'onInputRequest'> {
  /** Thread id. */
  thread: string;
  /** Thread token (JWT with `sub` = `thread:<id>`); it also opens every run of the thread. */
  token?: string;
  /** Or the API key (back ends). */
  apiKey?: string;
  /** Edge base URLs (array or comma-separated). Default: `[location.origin]`. */
  urls?: string | string[];
  /** A fresh thread token after a 401 / 4001. */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** An input request of any run of the thread. */
  onInputRequest?: (req: WeirInputRequest, run: WeirSession) => void;
}

/** One conversation with one agent: runs started with the conversation so far, each a WeirSession. */
export class WeirThread {
  constructor(opts: WeirThreadOptions);
  readonly thread: string;
  token: string | undefined;
  readonly urls: string[];
  /** The latest run. */
  run: WeirSession | undefined;
  onInputRequest?: (req: WeirInputRequest, run: WeirSession) => void;
  /**
   * `POST /v1/threads/{t}/runs`, then the run's stream (connecting already). Rejects with the
   * edge's code: `run_active`, `bad_request`, `not_found`, `unauthorized`, or `unreachable`.
   */
  startRun(run: WeirRunInput, options?: Partial<WeirSessionOptions>): Promise<WeirSession>;
  /** Answers an input request of one of the thread's runs. */
  answer(request: WeirInputRequest, data: Record<string, any>): Promise<void>;
  /** `GET /v1/threads/{t}`: the thread and its runs. */
  get(): Promise<{
    id: string;
    agent: string;
    created: number;
    runs: Array<{ id: string; status: string; created: number }>;
    active: string | null;
  }>;
}
