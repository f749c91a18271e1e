// The edit page: upload, describe, see the decision and the mask, generate, compare, pick.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {upload: null, classification: null, region: null, edit: null, shown: 0};

function show(id, visible = true) { $(id).classList.toggle("hidden", !visible); }

async function uploadFile(file) {
  $("upload-error").textContent = "";
  $("drop-text").textContent = `Uploading ${file.name}…`;
  const form = new FormData();
  form.append("file", file);
  try {
    state.upload = await api("/api/uploads", {method: "POST", body: form});
  } catch (error) {
    $("upload-error").textContent = error.message;
    $("drop-text").textContent = "Drop a photo here, or click to choose one";
    return;
  }
  $("drop-text").textContent = `${state.upload.name} (${state.upload.width}×${state.upload.height}) — drop another to replace it`;
  $("photo").src = state.upload.view;
  $("decide").disabled = false;
  show("results", false);
  if (state.classification) await showMask();
}

async function decide(event) {
  event.preventDefault();
  $("decide-error").textContent = "";
  $("decide").disabled = true;
  try {
    state.classification = await api("/api/classify", {method: "POST",
      json: {source: $("source").value, target: $("target").value}});
  } catch (error) {
    $("decide-error").textContent = error.message;
    return;
  } finally {
    $("decide").disabled = false;
  }
  const said = state.classification;
  state.region = said.label === "unidentified" ? null : said.label;
  show("decision");
  show("question", state.region === null);
  $("question-text").textContent = said.question || "";
  $("question-reason").textContent = said.reason ? `The classifier could not tell: ${said.reason}` : "";
  renderFacts();
  if (state.region) await showMask();
  else { show("overlay", false); show("controls", false); show("generate", false); }
}

function renderFacts() {
  const said = state.classification;
  const rows = [["Region", state.region || "not decided"], ["Subject", said.subject || "—"],
    ["Shape", said.shape === "change" ? "changes (the mask needs room)" : "kept"],
    ["Reason", said.reason || "—"], ["Decided by", said.source]];
  if (state.region && state.region !== said.label) rows[0][1] += " (your choice)";
  $("facts").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {text: k}), el("dd", {text: v})]));
  for (const radio of document.querySelectorAll("input[name=region]")) radio.checked = radio.value === state.region;
}

async function answer(region) {
  state.region = region;
  show("question", false);
  renderFacts();
  await showMask();
}

async function showMask() {
  if (!state.upload || !state.region) return;
  $("decide-error").textContent = "";
  $("mask-facts").textContent = "making the mask…";
  show("controls");
  try {
    const made = await api("/api/mask", {method: "POST", json: {upload: state.upload.id,
      region: state.region, extent: $("extent").value, shape: state.classification.shape}});
    const overlay = $("overlay");
    overlay.style.maskImage = `url("${made.url}")`;
    overlay.style.webkitMaskImage = `url("${made.url}")`;
    overlay.dataset.mask = made.url;
    show("overlay");
    $("mask-facts").textContent = `${made.region} · extent ${made.extent} · ${(made.coverage * 100).toFixed(1)}% of the photo · from ${made.from}`;
    show("generate");
  } catch (error) {
    $("mask-facts").textContent = "";
    $("decide-error").textContent = error.message;
  }
}

async function generate(event) {
  event.preventDefault();
  $("generate-error").textContent = "";
  const settings = {candidates: Number($("candidates").value), extent: $("extent").value};
  if (state.region !== state.classification.label) settings.region = state.region;
  if ($("seed").value !== "") settings.seed = Number($("seed").value);
  if ($("steps").value !== "") settings.steps = Number($("steps").value);
  $("go").disabled = true;
  show("progress");
  try {
    const job = await api("/api/edits", {method: "POST", json: {upload: state.upload.id,
      source: $("source").value, target: $("target").value, settings}});
    state.edit = await followJob(job, (j) => {
      $("progress").value = j.progress;
      $("progress-text").textContent = jobText(j);
    });
    state.shown = 0;
    renderResults();
  } catch (error) {
    if (error.type === "UnidentifiedRegionError") {
      show("question");
      $("question-text").textContent = "Which part should change: the foreground (the main subject) or the background?";
    }
    $("generate-error").textContent = error.message;
    $("progress-text").textContent = "";
  } finally {
    $("go").disabled = false;
    show("progress", false);
  }
}

function renderResults() {
  const edit = state.edit;
  show("results");
  const current = edit.candidates[state.shown] || edit.candidates[0];
  const label = (c) => (c.position === 0 ? "output" : `candidate ${c.position}`) + ` · seed ${c.seed}`;
  const box = $("compare-box");
  box.replaceChildren(comparison(edit.original, current.view, {afterLabel: label(current)}));
  $("candidates-row").replaceChildren(...edit.candidates.map((c, i) => el("figure",
    {class: i === state.shown ? "chosen" : "", "data-position": c.position},
    el("img", {src: c.thumb, alt: label(c), onclick: () => { state.shown = i; renderResults(); }}),
    el("figcaption", {}, el("span", {text: label(c)})))));
  $("pick").disabled = current.position === 0;
  $("pick-text").textContent = current.position === 0
    ? (edit.pick ? `Picked: seed ${edit.pick.seed} is the output.` : "This is the output.")
    : "";
  $("download-zip").href = edit.download;
  $("download-image").href = edit.candidates[0].file;
  $("download-sidecar").href = edit.sidecar;
}

async function pick() {
  const chosen = state.edit.candidates[state.shown];
  $("pick").disabled = true;
  try {
    state.edit = await api(`/api/edits/${state.edit.id}/pick`, {method: "POST",
      json: {candidate: chosen.position}});
    state.shown = 0;
    renderResults();
  } catch (error) {
    $("pick-text").textContent = error.message;
  }
}

function wireDrop() {
  const drop = $("drop");
  $("file").addEventListener("change", () => { if ($("file").files[0]) uploadFile($("file").files[0]); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) uploadFile(e.dataTransfer.files[0]);
  });
}

window.addEventListener("DOMContentLoaded", async () => {
  wireDrop();
  $("describe").addEventListener("submit", decide);
  $("generate-form").addEventListener("submit", generate);
  $("answer-foreground").addEventListener("click", () => answer("foreground"));
  $("answer-background").addEventListener("click", () => answer("background"));
  for (const radio of document.querySelectorAll("input[name=region]")) {
    radio.addEventListener("change", () => { state.region = radio.value; renderFacts(); showMask(); });
  }
  $("extent").addEventListener("change", showMask);
  $("pick").addEventListener("click", pick);
  try {
    const info = await api("/api/info");
    $("steps").value = info.defaults.steps;
  } catch (error) { /* the defaults stay empty: the server's apply */ }
});
