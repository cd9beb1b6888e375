// Refreshes the server-rendered status page from the JSON endpoints; no build step.
"use strict";
(function () {
  const body = document.body;
  const refreshMs = Number(body.dataset.refreshMs) || 2000;
  const needsAuth = body.dataset.auth === "required";
  let token = sessionStorage.getItem("sabot-token") || "";

  function esc(v) {
    return String(v === null || v === undefined ? "" : v).replace(/[&<>"']/g,
      c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  }
  function fmtRate(v) { return Number(v || 0).toLocaleString(undefined, {maximumFractionDigits: 1}) + " items/s"; }
  function fmtPct(v) { return (v === null || v === undefined) ? "–" : Number(v).toFixed(1) + " %"; }
  function fmtTime(t) { return t ? new Date(t * 1000).toLocaleTimeString() : ""; }

  async function get(path) {
    const headers = token ? {"Authorization": "Bearer " + token} : {};
    const resp = await fetch(path, {headers: headers, cache: "no-store"});
    if (resp.status === 401) { throw new Error("unauthorized"); }
    if (!resp.ok) { throw new Error(path + ": HTTP " + resp.status); }
    return resp.json();
  }

  function nodeRow(n) {
    return "<tr class=\"live\" data-node-id=\"" + esc(n.node_id) + "\"><td>" + esc(n.node_id) + "</td><td>" +
      esc(n.role) + "</td><td class=\"status-" + esc(n.status) + "\">" + esc(n.status) +
      "</td><td>" + esc(n.address) + "</td><td>" + fmtPct(n.utilization_percent) + "</td><td>" +
      esc(n.queue_depth === undefined ? "" : n.queue_depth) + "</td></tr>";
  }
  function jobRow(j) {
    const p = j.progress || {done: 0, total: 0, fraction: 0};
    return "<tr class=\"live\" data-job-id=\"" + esc(j.job_id) + "\"><td><code>" + esc(j.job_id.slice(0, 12)) +
      "</code></td><td>" + esc(j.processor) + "</td><td class=\"status-" + esc(j.status) + "\">" +
      esc(j.status) + "</td><td><progress max=\"1\" value=\"" + esc(p.fraction) + "\"></progress> " +
      esc(p.done) + "/" + esc(p.total) + "</td><td>" + esc(j.items) + "</td><td>" +
      fmtTime(j.created_at) + "</td><td class=\"error\" title=\"" + esc(j.error) + "\">" +
      esc(j.error) + "</td></tr>";
  }
  function pipelineRow(p) {
    const wm = p.watermark, tasks = p.tasks || [];
    const when = (typeof wm === "number" && wm > 0 && wm < 2 ** 50) ? new Date(wm).toISOString().slice(11, 19) : "–";
    const workers = [...new Set(tasks.map(t => String(t.worker)))].sort().join(", ") || "–";
    const ck = (p.checkpoints || {}).committed;
    return "<tr class=\"live\" data-pipeline-id=\"" + esc(p.pipeline_id) + "\"><td><code>" + esc(p.pipeline_id) +
      "</code></td><td>" + esc(p.name) + "</td><td class=\"status-" + esc(p.state) + "\">" + esc(p.state) +
      "</td><td>" + esc(p.instances) + "</td><td>" + esc(workers) + "</td><td>" +
      Number(p.events || 0).toLocaleString("en-US") + "</td><td>" + esc(when) + "</td><td>" +
      esc(ck ? ck : "–") + "</td><td class=\"error\" title=\"" + esc(p.error) + "\">" + esc(p.error) + "</td></tr>";
  }
  async function refreshPipelines() {
    const section = document.getElementById("pipelines-section");
    if (!section || section.hidden) { return; }
    const found = await get("/pipelines");
    document.querySelector("#pipelines tbody").innerHTML = found.pipelines.map(pipelineRow).join("");
    document.getElementById("pipeline-count").textContent = found.count;
  }
  function drawHistory(samples) {
    const line = document.getElementById("throughput-line");
    if (!samples.length) { line.setAttribute("points", ""); return; }
    const max = Math.max(1, ...samples.map(s => s.items_per_second));
    const t0 = samples[0].time, span = Math.max(1, samples[samples.length - 1].time - t0);
    line.setAttribute("points", samples.map(s =>
      ((s.time - t0) / span * 600).toFixed(1) + "," + (118 - s.items_per_second / max * 112).toFixed(1)).join(" "));
  }

  async function refresh() {
    try {
      const [nodes, jobs, history, stats] = await Promise.all(
        [get("/nodes"), get("/jobs?limit=50"), get("/history"), get("/stats")]);
      document.getElementById("login").hidden = true;
      document.querySelector("#nodes tbody").innerHTML = nodes.nodes.map(nodeRow).join("");
      document.getElementById("node-count").textContent = nodes.count;
      document.querySelector("#jobs tbody").innerHTML = jobs.jobs.map(jobRow).join("");
      document.getElementById("job-count").textContent = jobs.count;
      drawHistory(history.samples);
      await refreshPipelines();
      const last = history.samples.length ? history.samples[history.samples.length - 1].items_per_second : 0;
      document.getElementById("throughput-now").textContent = fmtRate(
        stats.throughput_items_per_second !== undefined ? stats.throughput_items_per_second : last);
      if (stats.queue_depth !== undefined) { document.getElementById("queue-depth").textContent = stats.queue_depth; }
      if (stats.utilization_percent !== undefined) { document.getElementById("utilization").textContent = fmtPct(stats.utilization_percent); }
      document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (err) {
      if (err.message === "unauthorized") { document.getElementById("login").hidden = false; }
      document.getElementById("updated").textContent = "refresh failed: " + err.message;
    }
  }

  document.getElementById("login-form").addEventListener("submit", ev => {
    ev.preventDefault();
    token = document.getElementById("token").value;
    sessionStorage.setItem("sabot-token", token);
    refresh();
  });
  if (needsAuth && !token) { document.getElementById("login").hidden = false; }
  refresh();
  setInterval(refresh, refreshMs);
})();
