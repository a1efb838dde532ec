// A small client for the Janus HTTP API, for the receiver and sender pages.
//
// One JanusSession owns a long poll (GET <url>/<session>?maxev=10) and a keepalive.
// Requests are matched to their answers by transaction; events without one of our
// transactions go to the handle they name (its `onevent`). When the poll fails or Janus
// forgets the session, `lost` resolves with the reason and every waiting request fails.

const KEEPALIVE_MS = 25000;
const REQUEST_TIMEOUT_MS = 10000;
const POLL_TIMEOUT_MS = 45000;

export class JanusError extends Error {
  constructor(code, reason) {
    super(`Janus error ${code}: ${reason}`);
    this.code = code;
    this.reason = reason;
  }
}

function transactionId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function fetchJson(url, options, timeoutMs) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  try {
    const response = await fetch(url, { ...options, signal: abort.signal });
    if (!response.ok) throw new Error(`HTTP ${response.status} from ${url}`);
    return await response.json();
  } finally {
    clearTimeout(timer);
  }
}

async function post(url, body, transaction = transactionId()) {
  const request = { ...body, transaction };
  const options = {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(request),
  };
  const answer = await fetchJson(url, options, REQUEST_TIMEOUT_MS);
  if (answer.janus === "error") throw new JanusError(answer.error.code, answer.error.reason);
  return [request.transaction, answer];
}

function pluginResult(message) {
  const data = message.plugindata && message.plugindata.data;
  if (!data) throw new Error(`Janus answer without plugin data: ${message.janus}`);
  if (data.error_code || data.error) throw new JanusError(data.error_code, data.error);
  return { data, jsep: message.jsep || null };
}

export class JanusSession {
  static async create(url) {
    const [, answer] = await post(url, { janus: "create" });
    const session = new JanusSession(url, answer.data.id);
    session.#start();
    return session;
  }

  constructor(url, id) {
    this.url = url;
    this.id = id;
    this.handles = new Map();
    this.pending = new Map(); // transaction -> {resolve, reject}
    this.closed = false;
    this.lost = new Promise((resolve) => (this.#markLost = resolve));
  }

  #markLost;
  #keepalive = null;

  async attach(plugin) {
    const [, answer] = await post(`${this.url}/${this.id}`, { janus: "attach", plugin });
    const handle = new JanusHandle(this, answer.data.id);
    this.handles.set(handle.id, handle);
    return handle;
  }

  async destroy() {
    if (this.closed) return;
    this.#end("destroyed");
    try {
      await post(`${this.url}/${this.id}`, { janus: "destroy" });
    } catch (error) {
      // Janus may be gone already: nothing left to clean up there
    }
  }

  #start() {
    this.#keepalive = setInterval(() => {
      post(`${this.url}/${this.id}`, { janus: "keepalive" }).catch((error) =>
        this.#end(`keepalive failed: ${error.message}`),
      );
    }, KEEPALIVE_MS);
    this.#poll();
  }

  async #poll() {
    while (!this.closed) {
      let events;
      try {
        events = await fetchJson(`${this.url}/${this.id}?maxev=10&rid=${Date.now()}`, {}, POLL_TIMEOUT_MS);
      } catch (error) {
        this.#end(`long poll failed: ${error.message}`);
        return;
      }
      for (const event of Array.isArray(events) ? events : [events]) this.#dispatch(event);
    }
  }

  #dispatch(event) {
    if (event.janus === "keepalive") return;
    if (event.janus === "timeout" || (event.janus === "error" && event.error?.code === 458)) {
      this.#end("Janus forgot the session");
      return;
    }
    const waiter = event.transaction && this.pending.get(event.transaction);
    if (waiter && event.janus !== "ack") {
      this.pending.delete(event.transaction);
      waiter(event);
      return;
    }
    const handle = this.handles.get(event.sender);
    if (handle && handle.onevent) handle.onevent(event);
  }

  #end(reason) {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.#keepalive);
    for (const waiter of this.pending.values()) waiter({ janus: "lost", reason });
    this.pending.clear();
    this.#markLost(reason);
  }

  // Sends a plugin message; resolves with the plugin's answer, synchronous or by event.
  // The waiter for the event is in place before the request leaves: Janus may deliver the
  // event through the long poll before the HTTP "ack" arrives.
  async send(handleId, body, jsep) {
    if (this.closed) throw new Error("Janus session is gone");
    const request = { janus: "message", body };
    if (jsep) request.jsep = jsep;
    const transaction = transactionId();
    let timer;
    const event = new Promise((resolve, reject) => {
      timer = setTimeout(() => {
        this.pending.delete(transaction);
        reject(new Error(`no answer from Janus to ${body.request}`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(transaction, (message) => {
        clearTimeout(timer);
        resolve(message);
      });
    });
    event.catch(() => {}); // handled below; avoids an unhandled rejection if we return early
    let answer;
    try {
      [, answer] = await post(`${this.url}/${this.id}/${handleId}`, request, transaction);
    } catch (error) {
      this.pending.delete(transaction);
      clearTimeout(timer);
      throw error;
    }
    if (answer.janus !== "ack") {
      this.pending.delete(transaction);
      clearTimeout(timer);
      return pluginResult(answer);
    }
    const message = await event;
    if (message.janus === "lost") throw new Error(message.reason);
    return pluginResult(message);
  }
}

export class JanusHandle {
  constructor(session, id) {
    this.session = session;
    this.id = id;
    this.onevent = null; // unsolicited events: webrtcup, hangup, media, plugin events
  }

  message(body, jsep) {
    return this.session.send(this.id, body, jsep);
  }

  async trickle(candidate) {
    const body = { janus: "trickle", candidate: candidate || { completed: true } };
    await post(`${this.session.url}/${this.session.id}/${this.id}`, body);
  }
}

// Puts constrained-baseline H.264 first in a transceiver's codec preferences, as the
// appliance sends it and every browser decodes it; other codecs stay as a fallback.
export function preferH264(transceiver, kind = "video") {
  const Capabilities = kind === "video" && RTCRtpSender.getCapabilities;
  if (!Capabilities || !transceiver.setCodecPreferences) return;
  const codecs = RTCRtpSender.getCapabilities(kind).codecs;
  const rank = (codec) => {
    if (codec.mimeType.toLowerCase() !== "video/h264") return 2;
    const fmtp = codec.sdpFmtpLine || "";
    return fmtp.includes("42e01f") && fmtp.includes("packetization-mode=1") ? 0 : 1;
  };
  transceiver.setCodecPreferences([...codecs].sort((a, b) => rank(a) - rank(b)));
}
