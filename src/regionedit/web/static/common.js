// Shared by the pages: calling the API, building elements, following jobs, comparing images.
"use strict";

/** Call the API; resolves to the JSON answer, or rejects with the server's one-line message. */
async function api(path, {method = "GET", json, body} = {}) {
  const options = {method, headers: {}, credentials: "same-origin"};
  if (json !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(json);
  } else if (body !== undefined) {
    options.body = body;
  }
  const response = await fetch(path, options);
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error((answer.error && answer.error.message) || response.statusText);
    error.type = answer.error && answer.error.type;
    error.status = response.status;
    throw error;
  }
  return answer;
}

/** An element with attributes (on* are listeners) and children (strings become text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

/** Follow a background job until it ends; onProgress(job) on every poll. Resolves to its
 *  result, rejects with its error (type and message). */
async function followJob(job, onProgress) {
  for (;;) {
    onProgress(job);
    if (job.status === "done") return job.result;
    if (job.status === "failed") {
      const error = new Error(job.error ? job.error.message : "the job failed");
      error.type = job.error && job.error.type;
      throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
    job = await api(`/api/jobs/${job.id}`);
  }
}

function jobText(job) {
  if (job.status === "queued") return job.ahead ? `waiting: ${job.ahead} job(s) before this one` : "waiting";
  return job.message;
}

/** A before/after comparison: the after image over the before one, cut at the slider. */
function comparison(beforeUrl, afterUrl, {beforeLabel = "original", afterLabel = "edited"} = {}) {
  const after = el("img", {class: "after", src: afterUrl, alt: afterLabel});
  const slider = el("input", {type: "range", min: "0", max: "100", value: "50", class: "slider",
    "aria-label": "move to compare"});
  const cut = () => { after.style.clipPath = `inset(0 0 0 ${slider.value}%)`; };
  slider.addEventListener("input", cut);
  cut();
  const box = el("div", {class: "compare"},
    el("img", {class: "before", src: beforeUrl, alt: beforeLabel}), after, slider,
    el("span", {class: "tag left", text: beforeLabel}), el("span", {class: "tag right", text: afterLabel}));
  return box;
}
