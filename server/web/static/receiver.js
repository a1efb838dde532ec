// The receiver page: every active camera of the room, live, where the controller puts it.
//
// The slot server (socket.io) says which Janus feed belongs to which slot, and how to show
// it (visibility, geometry, annotation); Janus (VideoRoom, one subscriber per feed) brings
// the video. Without geometry commands, feeds are laid out as a grid on the stage. Which
// Janus: the server says (`query_janus_url`): the origin, or one of its edges; when that
// Janus goes away, the page asks for another one and subscribes there.

import { io } from "./vendor/socket.io.esm.min.js";
import { JanusSession } from "./janus.js";

const DEFAULT_GEOMETRY = JSON.stringify({
  command: "set_geometry_relative_to_canvas",
  params: ["rb", "0", "0", "320", "240"],
});
const RETRY_MS = [500, 1000, 2000, 4000, 8000];
const ASK_MS = 3000; // how long to wait for the server's answer to query_janus_url
const STATS_MS = 1000;

const query = new URLSearchParams(location.search);
const stage = document.getElementById("stage");
const statusLine = document.getElementById("status");

function showStatus(text, level) {
  statusLine.textContent = text;
  statusLine.dataset.level = level;
}

// ---------------------------------------------------------------- Janus

// The Janus this page subscribes on: asked of the server (`choose(avoid)` resolves to
// {janusUrl, edge}), and asked again, avoiding it, once it failed.
class JanusLink {
  constructor(choose) {
    this.choose = choose;
    this.url = null;
    this.edge = null; // the edge's number, null for the origin
    this.avoid = [];
    this.session = null;
    this.connecting = null;
    this.failures = 0;
    this.onlost = () => {};
  }

  // Give up on the current Janus: the next get() asks for another one.
  moveOn() {
    this.avoid = this.edge === null ? [] : [this.edge];
    this.url = null;
    this.session = null;
  }

  // The shared session, created on first use and again after Janus went away.
  async get() {
    if (this.session && !this.session.closed) return this.session;
    if (!this.connecting) this.connecting = this.#connect().finally(() => (this.connecting = null));
    return this.connecting;
  }

  async #connect() {
    for (;;) {
      try {
        if (!this.url) {
          const { janusUrl, edge } = await this.choose(this.avoid);
          this.url = new URL(janusUrl, location.href).href;
          this.edge = edge ?? null;
        }
        const session = await JanusSession.create(this.url);
        this.session = session;
        this.failures = 0;
        session.lost.then((reason) => {
          if (this.session === session) this.onlost(reason);
        });
        return session;
      } catch (error) {
        showStatus(`Janus unreachable (${error.message}) – retrying`, "error");
        this.moveOn();
        const delay = RETRY_MS[Math.min(this.failures++, RETRY_MS.length - 1)];
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }
}

// ---------------------------------------------------------------- one feed

class FeedView {
  constructor(slot, janus, room, pin, iceServers) {
    this.slot = slot;
    this.janus = janus;
    this.room = room;
    this.pin = pin;
    this.iceServers = iceServers;
    this.state = null;
    this.pc = null;
    this.handle = null;
    this.generation = 0;
    this.element = document.createElement("div");
    this.element.className = "feed";
    this.element.dataset.slot = String(slot);
    this.video = document.createElement("video");
    Object.assign(this.video, { muted: true, autoplay: true, playsInline: true });
    this.annotation = document.createElement("div");
    this.annotation.className = "annotation";
    this.stats = document.createElement("div");
    this.stats.className = "stats";
    this.element.append(this.video, this.annotation, this.stats);
    stage.append(this.element);
  }

  update(state) {
    const newFeed = !this.state || this.state.feedId !== state.feedId;
    this.state = state;
    this.element.dataset.feedId = String(state.feedId);
    this.setAnnotation(state.annotation);
    this.element.hidden = state.visibility?.command === "hide";
    if (newFeed) this.subscribe();
  }

  setAnnotation(html) {
    this.annotation.innerHTML = html || ""; // the controller's HTML snippet, by design
    this.annotation.hidden = !html;
    this.element.classList.toggle("annotated", Boolean(html));
  }

  get usesGrid() {
    return JSON.stringify(this.state.geometry) === DEFAULT_GEOMETRY;
  }

  async subscribe() {
    const generation = ++this.generation;
    this.element.dataset.subscriptions = String(generation);
    this.#teardown();
    this.element.dataset.state = "connecting";
    for (let attempt = 0; generation === this.generation; attempt++) {
      try {
        await this.#subscribeOnce(generation);
        return;
      } catch (error) {
        if (generation !== this.generation) return;
        console.warn(`slot ${this.slot}: subscribe failed:`, error);
        this.#teardown();
        const delay = RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)];
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  async #subscribeOnce(generation) {
    const session = await this.janus.get();
    const handle = await session.attach("janus.plugin.videoroom");
    this.handle = handle;
    handle.onevent = (event) => {
      if (event.janus === "hangup" || event.janus === "detached") this.#resubscribeSoon(generation);
    };
    const join = { request: "join", ptype: "subscriber", room: this.room, streams: [{ feed: this.state.feedId }] };
    if (this.pin) join.pin = this.pin;
    const { jsep } = await handle.message(join);
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    pc.ontrack = (event) => {
      this.video.srcObject = event.streams[0] || new MediaStream([event.track]);
      this.video.play().catch(() => {});
    };
    pc.onicecandidate = (event) => handle.trickle(event.candidate).catch(() => {});
    pc.oniceconnectionstatechange = () => {
      const state = pc.iceConnectionState;
      this.element.dataset.state = state;
      if (state === "failed") this.#resubscribeSoon(generation);
    };
    await pc.setRemoteDescription(jsep);
    await pc.setLocalDescription(await pc.createAnswer());
    await handle.message({ request: "start" }, pc.localDescription);
  }

  #resubscribeSoon(generation) {
    if (generation === this.generation && this.state) setTimeout(() => this.subscribe(), 0);
  }

  #teardown() {
    if (this.pc) this.pc.close();
    this.pc = null;
    if (this.handle) {
      const handle = this.handle;
      handle.message({ request: "leave" }).catch(() => {});
    }
    this.handle = null;
  }

  remove() {
    this.generation++;
    this.state = null;
    this.#teardown();
    this.element.remove();
  }

  async readStats() {
    const result = { framesDecoded: 0, width: this.video.videoWidth, height: this.video.videoHeight };
    if (!this.pc) return result;
    const report = await this.pc.getStats();
    report.forEach((entry) => {
      if (entry.type === "inbound-rtp" && entry.kind === "video") {
        Object.assign(result, {
          framesDecoded: entry.framesDecoded || 0,
          framesPerSecond: entry.framesPerSecond || 0,
          bytesReceived: entry.bytesReceived || 0,
          timestamp: entry.timestamp,
        });
      }
    });
    return result;
  }
}

// ---------------------------------------------------------------- layout

function canvasSize() {
  const [width, height] = (query.get("canvas") || "1920x1080").split("x").map(Number);
  return width > 0 && height > 0 ? { width, height } : { width: 1920, height: 1080 };
}

// Places feeds: controller geometry where given, a grid for the rest.
function layout(views) {
  const canvas = canvasSize();
  const box = stage.getBoundingClientRect();
  const scale = Math.min(box.width / canvas.width, box.height / canvas.height);
  const origin = {
    left: (box.width - canvas.width * scale) / 2,
    top: (box.height - canvas.height * scale) / 2,
  };
  const grid = views.filter((view) => view.usesGrid);
  const columns = Math.ceil(Math.sqrt(grid.length));
  const rows = Math.ceil(grid.length / Math.max(columns, 1));
  grid.forEach((view, index) => {
    const width = box.width / columns;
    const height = box.height / rows;
    place(view, "grid", {
      left: (index % columns) * width,
      top: Math.floor(index / columns) * height,
      width,
      height,
    });
  });
  for (const view of views.filter((v) => !v.usesGrid)) {
    const { command, params } = view.state.geometry;
    const [corner, x, y, w, h, z] = params;
    const onCanvas = command === "set_geometry_relative_to_canvas";
    const factor = onCanvas ? scale : 1;
    const area = onCanvas
      ? { ...origin, width: canvas.width * scale, height: canvas.height * scale }
      : { left: 0, top: 0, width: window.innerWidth, height: window.innerHeight };
    const width = Number(w) * factor;
    const height = Number(h) * factor;
    const left = corner[0] === "l" ? Number(x) * factor : area.width - width - Number(x) * factor;
    const top = corner[1] === "t" ? Number(y) * factor : area.height - height - Number(y) * factor;
    place(view, onCanvas ? "canvas" : "window", {
      left: area.left + left,
      top: area.top + top,
      width,
      height,
      zIndex: z === undefined ? "" : String(Number(z)),
    });
  }
}

function place(view, mode, rect) {
  const style = view.element.style;
  view.element.dataset.layout = mode;
  style.position = mode === "window" ? "fixed" : "absolute";
  style.left = `${rect.left}px`;
  style.top = `${rect.top}px`;
  style.width = `${rect.width}px`;
  style.height = `${rect.height}px`;
  style.zIndex = rect.zIndex ?? "";
}

// ---------------------------------------------------------------- the page

async function main() {
  const config = await (await fetch("/cvh-config.json")).json();
  const room = Number(query.get("room") || config.room);
  const pin = query.get("pin") || "";
  const socket = io({ path: config.socketioPath, transports: ["websocket", "polling"] });
  const janus = new JanusLink((avoid) => askForJanus(socket, avoid, config.janusUrl));
  const views = new Map();
  const relayout = () => layout([...views.values()]);

  janus.onlost = (reason) => {
    showStatus(`Janus connection lost (${reason}) – reconnecting`, "error");
    janus.moveOn();
    for (const view of views.values()) view.subscribe();
  };

  const setFeed = (slot, state) => {
    if (!views.has(slot)) views.set(slot, new FeedView(slot, janus, room, pin, config.iceServers || []));
    views.get(slot).update(state);
    relayout();
  };
  const removeFeed = (slot) => {
    views.get(slot)?.remove();
    views.delete(slot);
    relayout();
  };
  const connected = () => showStatus(`Connected – ${views.size} camera(s)`, "ok");

  socket.on("connect", () => {
    socket.emit("query_state", (state) => {
      for (const slot of [...views.keys()]) if (!(String(slot) in state)) removeFeed(slot);
      for (const [slot, feed] of Object.entries(state)) setFeed(Number(slot), feed);
      connected();
    });
  });
  socket.on("disconnect", () => showStatus("Server connection lost – reconnecting", "error"));
  socket.on("connect_error", () => showStatus("Server unreachable – retrying", "error"));
  socket.on("new_feed", (feed) => {
    setFeed(feed.slot, feed);
    connected();
  });
  socket.on("remove_feed", ({ slot }) => {
    removeFeed(slot);
    connected();
  });
  socket.on("remove_all_feeds", () => {
    for (const slot of [...views.keys()]) removeFeed(slot);
    showStatus("The server stopped – waiting for it", "warn");
  });
  socket.on("command", ({ slot, command, params }) => {
    const view = views.get(slot);
    if (!view) return;
    const key = command === "hide" || command === "show" ? "visibility" : "geometry";
    view.update({ ...view.state, [key]: { command, params } });
    relayout();
  });
  socket.on("set_annotation", ({ slot, annotation }) => views.get(slot)?.setAnnotation(annotation));
  socket.on("remove_annotation", ({ slot }) => views.get(slot)?.setAnnotation(null));
  window.addEventListener("resize", relayout);
  setupStats(views);
  window.cvhReceiver = { views, stats: (slot) => views.get(slot)?.readStats() ?? null, socket, janus };
}

// The server's choice of Janus for this page; without an answer in time (an older server),
// the origin from the page configuration.
function askForJanus(socket, avoid, fallback) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ janusUrl: fallback, edge: null }), ASK_MS);
    socket.emit("query_janus_url", { avoid }, (answer) => {
      clearTimeout(timer);
      resolve(answer && answer.success ? answer : { janusUrl: fallback, edge: null });
    });
  });
}

// The per-feed overlay: resolution, frame rate, bitrate (toggle with "s" or ?stats).
function setupStats(views) {
  let last = new Map();
  const toggle = (on) => document.body.classList.toggle("show-stats", on);
  toggle(query.has("stats"));
  document.getElementById("stats-toggle").addEventListener("click", () =>
    toggle(!document.body.classList.contains("show-stats")),
  );
  window.addEventListener("keydown", (event) => {
    if (event.key === "s") toggle(!document.body.classList.contains("show-stats"));
  });
  setInterval(async () => {
    if (!document.body.classList.contains("show-stats")) return;
    const now = new Map();
    for (const [slot, view] of views) {
      const stats = await view.readStats();
      const before = last.get(slot);
      const seconds = before ? (stats.timestamp - before.timestamp) / 1000 : 0;
      const kbps = seconds > 0 ? ((stats.bytesReceived - before.bytesReceived) * 8) / seconds / 1000 : 0;
      view.stats.textContent =
        `${stats.width}×${stats.height} · ${Math.round(stats.framesPerSecond || 0)} fps · ` +
        `${Math.round(kbps)} kbit/s`;
      now.set(slot, stats);
    }
    last = now;
  }, STATS_MS);
}

main().catch((error) => showStatus(`Page failed: ${error.message}`, "error"));
