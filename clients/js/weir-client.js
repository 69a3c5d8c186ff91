// @ts-check
/**
 * weir-client — resumable, exactly-once streaming of weir sessions over WebSocket, and threads
 * of runs (conversations) with input requests answered from the page.
 *
 * An ES module with no runtime dependencies. Works in browsers (`<script type="module">`,
 * bundlers) and in Node (pass a WebSocket implementation such as the `ws` package).
 *
 * Wire contract: docs/protocol.md §5 (frames, close codes) and §6 (guarantees).
 *
 * ```js
 * import { WeirSession, createSession } from './weir-client.js';
 * const { id, token } = await createSession(location.origin, { agent: 'mock', input: { tokens: 50 } });
 * const s = new WeirSession({ session: id, token, urls: [location.origin] });
 * for await (const ev of s) console.log(ev.seq, ev.kind, ev.data);
 * ```
 *
 * @module weir-client
 */

export { WeirSession } from './weir-client/session.js';
export { CloseCode, backoffDelay, wsUrl } from './weir-client/wire.js';
export { WeirError, createSession, createThread, fetchHistory } from './weir-client/http.js';
export { WeirThread } from './weir-client/thread.js';
import { WeirSession } from './weir-client/session.js';
export default WeirSession;
