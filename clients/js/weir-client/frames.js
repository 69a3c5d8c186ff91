// @ts-check
/**
 * What the client does with each frame the server sends (protocol.md §5): `hello`, `events`
 * (in seq order, duplicates dropped, a gap resumed from the cursor), `heartbeat`, `notice`,
 * `error` and `reconnect`; and what the code a connection closes with means for the session.
 * @module weir-client/frames
 */

import { WeirError } from './http.js';
import { CLIENT_DROP, CloseCode, TERMINAL_STATUS } from './wire.js';

/** @typedef {import('./session.js').WeirSession} WeirSession */
/** @typedef {import('./wire.js').WeirNotice} WeirNotice */

/**
 * A frame from the server, as it came off the socket.
 * @param {WeirSession} s
 * @param {any} data
 */
export function onFrame(s, data) {
  let text = data;
  if (typeof text !== 'string') {
    try {
      text = new TextDecoder().decode(data);
    } catch {
      text = String(data);
    }
  }
  /** @type {any} */
  let frame;
  try {
    frame = JSON.parse(text);
  } catch (e) {
    s._emitError(new WeirError('protocol', 'frame from server is not JSON', { cause: e }));
    return;
  }
  switch (frame && frame.type) {
    case 'hello':
      onHello(s, frame);
      break;
    case 'events':
      if (!s._helloSeen) onHello(s, {});
      onEvents(s, Array.isArray(frame.events) ? frame.events : []);
      s._inputs.frameDone();
      break;
    case 'heartbeat':
      break;
    case 'notice':
      onNotice(s, frame.data);
      break;
    case 'error':
      if (s._inputs.refused(String(frame.code), String(frame.message ?? ''))) break;
      s._lastServerError = { code: String(frame.code ?? 'error'), message: String(frame.message ?? '') };
      s._emitError(new WeirError(s._lastServerError.code, s._lastServerError.message || s._lastServerError.code));
      break;
    case 'reconnect':
      s._teardown(1000, 'server asked to reconnect');
      s._scheduleReconnect({ reason: `server draining${frame.reason ? ': ' + frame.reason : ''}`, delay: 0 });
      break;
    default:
      // Unknown frame types are ignored: the server may add some.
      break;
  }
}

/** @param {WeirSession} s @param {any} frame */
function onHello(s, frame) {
  s._helloSeen = true;
  s._attempt = 0;
  s._refreshedToken = false;
  s.connections++;
  if (typeof frame.node === 'string') s.node = frame.node;
  if (typeof frame.status === 'string') s.serverStatus = frame.status;
  s._setState('open', { url: s.url, node: s.node, serverStatus: s.serverStatus });
  const waiters = s._openWaiters.splice(0);
  for (const w of waiters) w.resolve();
  // Flush what waited for a connection.
  const pending = s._pendingControl.splice(0);
  for (const f of pending) {
    if (!s._sendNow(f)) s._pendingControl.push(f);
  }
  s._sendAck(); // an ack that could not be sent while disconnected
  s._inputs.frameDone(); // a request restored from `persist`
}

/** @param {WeirSession} s @param {any[]} events */
function onEvents(s, events) {
  let delivered = 0;
  for (const ev of events) {
    if (s.done) return;
    const seq = ev && ev.seq;
    if (typeof seq !== 'number' || !Number.isInteger(seq) || seq < 1) {
      s._emitError(new WeirError('protocol', `event without a valid seq: ${JSON.stringify(ev)?.slice(0, 200)}`));
      continue;
    }
    if (seq <= s.lastSeq) continue; // duplicate: already delivered
    if (seq !== s.lastSeq + 1) {
      // A gap: never deliver out of order. Resume from what we hold.
      if (delivered) s._afterDelivery();
      s._teardown(CLIENT_DROP, 'gap');
      s._scheduleReconnect({ reason: `gap: got seq ${seq} after ${s.lastSeq}`, delay: 0, rotate: false });
      return;
    }
    s.lastSeq = seq;
    delivered++;
    s._deliver(ev);
    if (ev.kind === 'end') {
      s._afterDelivery();
      s._ended(ev);
      return;
    }
  }
  if (delivered) s._afterDelivery();
}

/**
 * An operator broadcast. It is outside the session's log: no seq, so lastSeq, the persisted
 * cursor and acks stay as they are.
 * @param {WeirSession} s
 * @param {any} data
 */
function onNotice(s, data) {
  /** @type {WeirNotice} */
  const notice = data && typeof data === 'object' ? data : data == null ? {} : { text: String(data) };
  s._call(s.onNotice, notice);
  s._callAll('notice', notice);
}

/**
 * The socket closed: what its code means for the session (protocol.md §5 close codes).
 * @param {WeirSession} s @param {number} code @param {string} reason
 */
export function onClose(s, code, reason) {
  if (s.done) return;
  const se = s._lastServerError;
  const detail = se ? `${se.code}: ${se.message}` : reason || `close ${code}`;
  switch (code) {
    case CloseCode.DONE:
      if (s.serverStatus && TERMINAL_STATUS.has(s.serverStatus)) {
        // The session is over and we already hold its end (e.g. resumed after the end).
        s._finish('ended', { reason: s.serverStatus, closeCode: code });
        return;
      }
      s._scheduleReconnect({ reason: `closed before end (${detail})`, closeCode: code });
      return;
    case CloseCode.DRAINING:
      s._scheduleReconnect({ reason: `server draining (${detail})`, closeCode: code, delay: 0 });
      return;
    case CloseCode.UNAUTHORIZED:
      void s._onUnauthorized(detail);
      return;
    case CloseCode.NO_SUCH_SESSION:
      s._fail(new WeirError('no_such_session', `no such session ${s.session} (${detail})`, { closeCode: code }));
      return;
    case CloseCode.EXPIRED:
      s._fail(new WeirError('history_expired', `history after seq ${s.lastSeq} has expired (${detail})`, { closeCode: code }));
      return;
    case CloseCode.TOO_LARGE:
      s._fail(new WeirError('frame_too_large', `a client frame was too large (${detail})`, { closeCode: code }));
      return;
    case 1008: // policy violation: the edge refused the request itself (e.g. `after` beyond the last seq)
      s._fail(new WeirError(se ? se.code : 'bad_request', `request refused (${detail})`, { closeCode: code }));
      return;
    case CloseCode.SLOW_CONSUMER:
    default:
      s._scheduleReconnect({ reason: `connection lost (${detail})`, closeCode: code });
  }
}
