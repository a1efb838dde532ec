// The sender page: this browser's camera, published into one slot of the room.
//
// Start: the slot server checks slot and token (`sender_init`); only then does the page
// join the Janus VideoRoom as a publisher, send H.264 and report its publisher id, Janus
// session id and handle id (`set_feed_id`). Losing the server, Janus or the ICE connection
// ends the run; the user starts again. Query string: docs/protocol.md, the browser sender page.

import { io } from "./vendor/socket.io.esm.min.js";
import { JanusError, JanusSession, preferH264 } from "./janus.js";

const ACK_TIMEOUT_MS = 10000;
const MEDIA_TIMEOUT_MS = 20000;
const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };

const $ = (id) => document.getElementById(id);
const ui = {
  where: $("where"),
  status: $("status"),
  preview: $("preview"),
  setup: $("setup"),
  camera: $("camera"),
  pinField: $("pin-field"),
  pin: $("pin"),
  start: $("start"),
  stop: $("stop"),
  nameForm: $("name-form"),
  name: $("name"),
  rename: $("rename"),
  bitrateForm: $("bitrate-form"),
  bitrate: $("bitrate"),
  setBitrate: $("set-bitrate"),
  controllerLimit: $("controller-limit"),
};

function showStatus(text, level = "info") {
  ui.status.textContent = text;
  ui.status.dataset.level = level;
}

function formatBitrate(bits) {
  if (typeof bits !== "number") return "unknown";
  if (bits <= 0) return "none";
  return `${(bits / 1000).toLocaleString("en", { maximumFractionDigits: 1 })} kbit/s`;
}

function withTimeout(promise, ms, message) {
  let timer;
  const expired = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)));
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------- settings

async function loadSettings() {
  const query = new URLSearchParams(location.search);
  let config = {};
  try {
    config = await (await fetch("/cvh-config.json")).json();
  } catch (error) {
    console.warn("no /cvh-config.json, using defaults:", error);
  }
  const pin = query.get("pin");
  return {
    socketioPath: config.socketioPath || "/socket.io",
    janusUrl: new URL(config.janusUrl || "/janus", location.href).href,
    room: Number(query.get("room") || config.room || 1000),
    iceServers: config.iceServers || [],
    slot: query.get("slot") || "0", // the server checks it and names what is wrong
    token: query.get("token") ?? undefined, // absent: the server answers "No token provided"
    pin: pin === null ? null : pin === "none" ? "" : pin, // null: ask the user
    name: query.get("customNameAllowed"), // null: custom names are not allowed
  };
}

// ---------------------------------------------------------------- camera

class Camera {
  constructor(video, select) {
    this.video = video;
    this.select = select;
    this.stream = null;
  }

  get track() {
    return this.stream?.getVideoTracks()[0] ?? null;
  }

  async open(deviceId) {
    if (!navigator.mediaDevices) throw new Error("The camera needs a secure page (https or localhost)");
    const video = deviceId ? { ...VIDEO, deviceId: { exact: deviceId } } : VIDEO;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video, audio: false });
    } catch (error) {
      throw new Error(cameraProblem(error));
    }
    this.close();
    this.stream = stream;
    this.video.srcObject = stream;
    await this.#listDevices();
    return this.track;
  }

  async #listDevices() {
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
    const current = this.track?.getSettings().deviceId;
    const options = devices.map(
      (device, index) =>
        new Option(device.label || `Camera ${index + 1}`, device.deviceId, false, device.deviceId === current),
    );
    this.select.replaceChildren(...options);
  }

  close() {
    this.stream?.getTracks().forEach((track) => track.stop());
    this.stream = null;
    this.video.srcObject = null;
  }
}

function cameraProblem(error) {
  switch (error.name) {
    case "NotAllowedError":
      return "Camera access was denied – allow it in the browser, then press Start";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera found";
    case "NotReadableError":
      return "The camera is in use by another program";
    default:
      return `The camera failed: ${error.message}`;
  }
}

// ---------------------------------------------------------------- one run

function janusProblem(what, error, room) {
  if (!(error instanceof JanusError)) return `${what}: ${error.message}`;
  if (error.code === 433) return "Wrong room pin";
  if (error.code === 426) return `The video room ${room} does not exist`;
  return `${what}: ${error.reason}`;
}

// One attempt to send the camera: authenticate, publish, report. `onend(message)` tells
// that the run ended by itself (connection lost); `stop()` ends it from outside.
class Publisher {
  constructor(settings) {
    this.settings = settings;
    this.stopped = false;
    this.socket = null;
    this.session = null;
    this.handle = null;
    this.pc = null;
    this.onend = () => {};
    this.oncontrollerlimit = () => {};
  }

  async start(track, { pin, name }) {
    this.socket = await this.#connect();
    const auth = await this.call("sender_init", { slot: this.settings.slot, token: this.settings.token });
    if (!auth.success) throw new Error(auth.message);
    const feedId = await this.#join(pin, name);
    await this.#publish(track);
    const report = { feedId, sessionId: this.session.id, videoroomId: this.handle.id };
    if (name) report.customName = name;
    const answer = await this.call("set_feed_id", report);
    if (!answer.success) throw new Error(answer.message);
    return answer;
  }

  #connect() {
    const socket = io({ path: this.settings.socketioPath, transports: ["websocket", "polling"], reconnection: false });
    socket.on("disconnect", (reason) => this.#end(`The connection to the server was lost (${reason})`));
    socket.on("new_controller_bitrate_limit", ({ bitrateLimit }) => this.oncontrollerlimit(bitrateLimit));
    return new Promise((resolve, reject) => {
      socket.once("connect", () => resolve(socket));
      socket.once("connect_error", (error) => {
        socket.close();
        reject(new Error(`Cannot reach the camera server (${error.message})`));
      });
    });
  }

  // An event with acknowledgement; the answer is always {success, message, …}.
  async call(event, payload) {
    try {
      return await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
    } catch (error) {
      throw new Error(`The camera server did not answer (${event})`);
    }
  }

  async #join(pin, name) {
    const { room, janusUrl, slot } = this.settings;
    try {
      this.session = await JanusSession.create(janusUrl);
    } catch (error) {
      throw new Error(janusProblem("The video server is unreachable", error, room));
    }
    this.session.lost.then((reason) => this.#end(`The connection to the video server was lost (${reason})`));
    try {
      this.handle = await this.session.attach("janus.plugin.videoroom");
      this.handle.onevent = (event) => this.#onevent(event);
      const join = { request: "join", ptype: "publisher", room, display: name || `slot ${slot}` };
      if (pin) join.pin = pin;
      const { data } = await this.handle.message(join);
      return data.id;
    } catch (error) {
      throw new Error(janusProblem("Could not join the video room", error, room));
    }
  }

  #webrtcUp = () => {};

  #onevent(event) {
    if (event.janus === "webrtcup") this.#webrtcUp();
    else if (event.janus === "hangup") this.#end(`The video server hung up (${event.reason})`);
  }

  async #publish(track) {
    const pc = new RTCPeerConnection({ iceServers: this.settings.iceServers });
    this.pc = pc;
    track.contentHint = "detail"; // under a low bitrate limit: fewer frames, never a smaller picture
    preferH264(pc.addTransceiver(track, { direction: "sendonly" }));
    const up = new Promise((resolve) => (this.#webrtcUp = resolve));
    const early = [];
    let trickle = (candidate) => early.push(candidate);
    pc.onicecandidate = ({ candidate }) => trickle(candidate);
    pc.oniceconnectionstatechange = () => {
      if (pc.iceConnectionState !== "failed") return;
      this.#end("The video connection failed (ICE) – is a firewall in the way?");
    };
    await pc.setLocalDescription(await pc.createOffer());
    let jsep;
    try {
      const publish = { request: "publish", audio: false, video: true };
      ({ jsep } = await this.handle.message(publish, pc.localDescription));
    } catch (error) {
      throw new Error(janusProblem("The video server refused the camera", error, this.settings.room));
    }
    if (!jsep) throw new Error("The video server sent no answer to the camera's offer");
    await pc.setRemoteDescription(jsep);
    trickle = (candidate) => this.handle.trickle(candidate).catch(() => {});
    early.forEach(trickle);
    await withTimeout(up, MEDIA_TIMEOUT_MS, "The video connection did not come up");
  }

  replaceTrack(track) {
    const sender = this.pc?.getSenders()[0];
    if (!sender) return Promise.resolve();
    track.contentHint = "detail";
    return sender.replaceTrack(track);
  }

  async stats() {
    const result = { codec: null, framesEncoded: 0, bytesSent: 0 };
    if (!this.pc) return result;
    const report = await this.pc.getStats();
    report.forEach((entry) => {
      if (entry.type !== "outbound-rtp" || entry.kind !== "video") return;
      result.codec = report.get(entry.codecId)?.mimeType ?? null;
      result.framesEncoded = entry.framesEncoded || 0;
      result.bytesSent = entry.bytesSent || 0;
    });
    return result;
  }

  #end(message) {
    if (!this.stopped) this.onend(message);
  }

  // Leaves Janus (destroying the session leaves the room), then the server. Idempotent.
  stop() {
    if (this.stopped) return;
    this.stopped = true;
    this.pc?.close();
    this.session?.destroy();
    this.socket?.close();
  }
}

// ---------------------------------------------------------------- the page

class SenderPage {
  constructor(settings) {
    this.settings = settings;
    this.camera = new Camera(ui.preview, ui.camera);
    this.publisher = null;
    this.state = "idle";
  }

  setup() {
    const { room, slot, pin, name } = this.settings;
    ui.where.textContent = `Room ${room} · camera slot ${slot}`;
    ui.pinField.hidden = pin !== null;
    ui.nameForm.hidden = name === null;
    ui.name.value = name ?? "";
    ui.setup.addEventListener("submit", (event) => {
      event.preventDefault();
      this.start();
    });
    ui.stop.addEventListener("click", () => this.stop());
    ui.camera.addEventListener("change", () => this.switchCamera(ui.camera.value));
    ui.bitrateForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.setBitrateLimit(Math.round(Number(ui.bitrate.value) * 1000));
    });
    ui.nameForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.changeName(ui.name.value.trim());
    });
    this.setState("idle");
  }

  setState(state) {
    this.state = state;
    document.body.dataset.state = state;
    const idle = state === "idle";
    const live = state === "live";
    ui.start.disabled = !idle;
    ui.stop.disabled = idle;
    ui.pin.disabled = !idle;
    ui.camera.disabled = ui.camera.options.length === 0;
    ui.setBitrate.disabled = !live;
    ui.rename.disabled = !live;
  }

  async openCamera(deviceId = ui.camera.value) {
    try {
      await this.camera.open(deviceId);
      return true;
    } catch (error) {
      showStatus(error.message, "error");
      return false;
    } finally {
      ui.camera.disabled = ui.camera.options.length === 0;
    }
  }

  async start() {
    this.setState("starting");
    if (!this.camera.track && !(await this.openCamera())) return this.setState("idle");
    if (this.state !== "starting") return; // stopped while the camera opened
    const run = new Publisher(this.settings);
    this.publisher = run;
    run.onend = (message) => this.finish(run, message, "error");
    run.oncontrollerlimit = (limit) => {
      ui.controllerLimit.value = formatBitrate(limit);
      showStatus(`The controller set your bitrate limit to ${formatBitrate(limit)}`, "ok");
    };
    showStatus("Connecting…");
    const pin = this.settings.pin ?? ui.pin.value;
    const name = this.settings.name === null ? "" : ui.name.value.trim();
    try {
      const answer = await run.start(this.camera.track, { pin, name });
      if (run.stopped) return;
      ui.controllerLimit.value = formatBitrate(answer.controllerBitrateLimit);
      showStatus(answer.message, "ok");
      this.setState("live");
    } catch (error) {
      this.finish(run, error.message, "error");
    }
  }

  // Ends a run (if it is still the current one) and offers to start again.
  finish(run, message, level) {
    if (this.publisher !== run) return;
    this.publisher = null;
    run.stop();
    ui.controllerLimit.value = "unknown";
    ui.start.textContent = "Start again";
    showStatus(message, level);
    this.setState("idle");
  }

  stop() {
    const message = "Stopped – your camera is no longer sent";
    if (this.publisher) {
      this.finish(this.publisher, message, "info");
    } else if (this.state !== "idle") {
      showStatus(message);
      this.setState("idle");
    }
    this.camera.close();
  }

  async switchCamera(deviceId) {
    if (!(await this.openCamera(deviceId))) return;
    await this.publisher?.replaceTrack(this.camera.track);
  }

  async setBitrateLimit(bits) {
    const run = this.publisher;
    if (!run) return;
    try {
      const answer = await run.call("set_bitrate_limit", { bitrateLimit: bits });
      showStatus(answer.message, answer.success ? "ok" : "error");
    } catch (error) {
      showStatus(error.message, "error");
    }
  }

  changeName(name) {
    if (!this.publisher || !name) return;
    this.publisher.socket.emit("change_name", { newName: name }); // no answer in the protocol
    showStatus(`Your name was sent: ${name}`, "ok");
  }
}

async function main() {
  const page = new SenderPage(await loadSettings());
  page.setup();
  window.cvhSender = { page, stats: () => page.publisher?.stats() ?? null };
  const ready = await page.openCamera();
  if (ready && page.state === "idle") showStatus(`Press Start to send your camera to slot ${page.settings.slot}`);
}

main().catch((error) => showStatus(`Page failed: ${error.message}`, "error"));
