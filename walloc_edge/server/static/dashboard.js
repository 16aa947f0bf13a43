// The dashboard of walloc-edge serve: polls fleet.json every 2 s and redraws the summary,
// the chart of the fleet's rate and a row per sensor. Shipped with the package: nothing is
// loaded from elsewhere.
"use strict";

const POLL_MS = 2000;
const QUIET_S = 90;  // a sensor unheard for longer is marked quiet
const token = new URLSearchParams(location.search).get("token");
const rows = new Map();  // sensor id -> its <tr>

function withToken(url) {
  if (!token) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

function ago(seconds) {
  if (seconds < 60) return Math.max(0, Math.round(seconds)) + " s ago";
  if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
  if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
  return Math.round(seconds / 86400) + " d ago";
}

function size(n) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function element(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className) e.className = className;
  return e;
}

function summary(fleet) {
  const health = document.getElementById("health");
  health.textContent = fleet.healthy ? "healthy" : "unhealthy: " + fleet.health;
  health.className = "badge " + (fleet.healthy ? "ok" : "bad");
  const m = fleet.messages, link = fleet.link;
  const items = [["written", m.written], ["rejected", m.rejected],
                 ["not written", m.not_written], ["duplicates", m.duplicate],
                 ["collisions", m.collision], ["bytes", size(fleet.bytes)],
                 ["frames", link.frames], ["corrupted", link.corrupted],
                 ["unauthenticated", link.unauthenticated], ["rate-limited", link.rate_limited],
                 ["lost", link.lost], ["heartbeats", link.heartbeats], ["queue", link.queue]];
  if (link.held_bytes !== undefined) items.push(["held", size(link.held_bytes)]);
  if (link.connections !== null && link.connections !== undefined)
    items.push(["connections", link.connections]);
  const box = document.getElementById("summary");
  box.replaceChildren(...items.filter(([, v]) => v !== undefined).map(([name, value]) => {
    const span = element("span", name + " ");
    span.appendChild(element("b", String(value)));
    return span;
  }));
}

function chart(rate) {
  const svg = document.getElementById("chart");
  const ns = "http://www.w3.org/2000/svg";
  const perMinute = rate.counts.map((n) => n * 60 / rate.width);
  const top = Math.max(1, ...perMinute);
  const step = 600 / Math.max(1, perMinute.length - 1);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", perMinute.map((v, i) =>
    (i * step).toFixed(1) + "," + (115 - 105 * v / top).toFixed(1)).join(" "));
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", "4");
  label.setAttribute("y", "12");
  label.textContent = "max " + Math.round(top) + "/min";
  svg.replaceChildren(line, label);
}

function heartbeatText(beat, now) {
  if (!beat) return "none";
  const parts = ["spool " + (beat.spool ?? "?")];
  if (beat.spool_bytes !== undefined) parts[0] += " (" + size(beat.spool_bytes) + ")";
  if (beat.dropped) parts.push("dropped " + beat.dropped);
  if (beat.uptime !== undefined) parts.push("up " + ago(beat.uptime).replace(" ago", ""));
  if (beat.version) parts.push("v" + beat.version);
  if (beat.backend) parts.push(beat.backend);
  parts.push(ago(now - beat.time));
  return parts.join(", ");
}

function row(sensor) {
  let tr = rows.get(sensor.id);
  if (!tr) {
    tr = element("tr");
    tr.dataset.sensor = sensor.id;
    const cells = ["id", "seen", "rate", "written", "bytes", "lost", "rejected", "heartbeat",
                   "frame"];
    for (const name of cells) {
      const td = element("td", undefined, name);
      td.dataset.cell = name;
      if (["rate", "written", "bytes", "lost", "rejected"].includes(name))
        td.classList.add("number");
      tr.appendChild(td);
    }
    tr.cells[0].appendChild(element("code", sensor.id));
    document.querySelector("#sensors tbody").appendChild(tr);
    rows.set(sensor.id, tr);
  }
  return tr;
}

function frameCell(td, sensor) {
  if (sensor.frame === null) {
    td.replaceChildren(element("span", sensor.label ? sensor.label : ""));
    return;
  }
  let img = td.querySelector("img");
  if (!img) {
    img = element("img");
    img.alt = "latest frame of " + sensor.id;
    img.onload = () => { img.dataset.loaded = "true"; };
    td.replaceChildren(img, element("span"));
  }
  if (img.dataset.frame !== String(sensor.frame)) {
    img.dataset.frame = String(sensor.frame);
    img.src = withToken("frame/" + sensor.id + ".jpg?n=" + sensor.frame);
  }
  const label = sensor.label ?
    sensor.label + (sensor.confidence !== null ? " (" + Math.round(100 * sensor.confidence) + "%)" : "") :
    "";
  td.querySelector("span").textContent = label;
}

function table(fleet) {
  document.getElementById("count").textContent =
    "(" + fleet.sensors.length + "; at most " + fleet.max_sensors + " tracked one by one)";
  for (const sensor of fleet.sensors) {
    const tr = row(sensor);
    const cell = (name) => tr.querySelector("td[data-cell=" + name + "]");
    cell("seen").textContent = ago(fleet.time - sensor.last_seen);
    cell("rate").textContent = String(sensor.per_minute);
    cell("written").textContent = String(sensor.messages.written);
    cell("bytes").textContent = size(sensor.bytes);
    cell("lost").textContent = String(sensor.lost);
    cell("rejected").textContent = String(sensor.rejected);
    cell("heartbeat").textContent = heartbeatText(sensor.heartbeat, fleet.time);
    const name = sensor.heartbeat && sensor.heartbeat.name;  // the --sensor-id it was given
    if (name && tr.cells[0].dataset.name !== name) {
      tr.cells[0].dataset.name = name;
      tr.cells[0].replaceChildren(element("code", sensor.id), element("span", " " + name));
    }
    const beat = sensor.heartbeat;  // its last word was that it stopped (not a crash)
    const stopped = Boolean(beat && beat.state === "stopped" && beat.time >= sensor.last_seen - 1);
    tr.classList.toggle("stopped", stopped);
    tr.classList.toggle("quiet", !stopped && fleet.time - sensor.last_seen > QUIET_S);
    tr.classList.toggle("filling", Boolean(sensor.heartbeat && sensor.heartbeat.spool > 0));
    tr.classList.toggle("dropping", Boolean(sensor.heartbeat && sensor.heartbeat.dropped > 0));
    frameCell(cell("frame"), sensor);
  }
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const response = await fetch(withToken("fleet.json"), { cache: "no-store" });
    if (!response.ok) throw new Error(response.status + " " + response.statusText);
    const fleet = await response.json();
    summary(fleet);
    chart(fleet.rate);
    table(fleet);
    status.textContent = "";
  } catch (e) {
    status.textContent = "cannot reach serve: " + e.message;
  }
  setTimeout(poll, POLL_MS);
}

poll();
