// The control page: the live preview, the run's figures, and the controls, all through the API
// with the token as a Bearer header (never a cookie).
"use strict";

const token = livematteToken();
const $ = (id) => document.getElementById(id);
let state = {};

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { Authorization: `Bearer ${token}`, ...(options.headers || {}) } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function say(text, ok) { $("message").textContent = text; $("message").className = ok ? "ok" : ""; }

function show(newState) {
  state = newState;
  $("preset").value = state.preset;
  $("model-size").value = state.model_size;
  $("pause").textContent = state.paused ? "Resume" : "Pause";
}

async function change(changes) {
  try { show(await api("/api/state", { method: "POST", body: JSON.stringify(changes) })); say(`applied ${JSON.stringify(changes)}`, true); }
  catch (e) { say(e.message); }
}

async function loadOptions() {
  const options = await api("/api/options");
  $("preset").replaceChildren(...options.presets.map((name) => new Option(name, name)));
  $("images").replaceChildren(...options.images.map((spec) => {
    const button = document.createElement("button");
    button.textContent = spec.split(/[\\/]/).pop();
    button.title = spec;
    button.onclick = () => change({ background: spec });
    return button;
  }));
  show(await api("/api/state"));
}

async function refreshStats() {
  try {
    const s = await api("/api/stats");
    const now = s.governor && s.governor.level;
    const level = now ? `, level ${now.model ? now.model + " " : ""}${now.size}px/${now.stride}` : "";
    $("stats").textContent = `${s.fps.toFixed(1)} fps, latency p50 ${s.latency_ms.p50} ms p95 ${s.latency_ms.p95} ms, ` +
      `dropped ${s.dropped}${level}${state.paused ? " (paused)" : ""}`;
  } catch (e) { $("stats").textContent = e.message; }
}

$("apply-color").onclick = () => change({ background: `color:${$("color").value}` });
$("apply-blur").onclick = () => change({ background: `blur:${$("blur").value}` });
$("apply-key").onclick = () => change({ background: `key:${$("key").value}` });
$("apply-transparent").onclick = () => change({ background: "transparent" });
$("preset").onchange = () => change({ preset: $("preset").value });
$("apply-size").onclick = () => change({ model_size: Number($("model-size").value) });
$("pause").onclick = () => change({ paused: !state.paused });
$("upload").onchange = async () => {
  const file = $("upload").files[0];
  if (!file) return;
  try {
    show(await api(`/api/background?name=${encodeURIComponent(file.name)}`, { method: "POST", body: file }));
    say(`background: ${file.name}`, true);
    await loadOptions();
  } catch (e) { say(e.message); }
  $("upload").value = "";
};
$("overlay-link").href = `/overlay?token=${encodeURIComponent(token)}`;

window.livematteFrames = 0;
livematteStream($("preview"), "preview", () => { window.livematteFrames++; });
loadOptions().catch((e) => say(e.message));
refreshStats();
setInterval(refreshStats, 1000);
