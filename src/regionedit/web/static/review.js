// The review page: a batch output folder's items, a page at a time, with picks and re-runs.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 50;
const FILTERS = [["", "All"], ["done", "Done"], ["failed", "Failed"],
  ["unidentified", "Unidentified"], ["picked", "Picked"], ["decided", "Decided (dry run)"]];
const view = {status: "", offset: 0};

function readLocation() {
  const query = new URLSearchParams(location.search);
  view.status = query.get("status") || "";
  view.offset = Math.max(0, Number(query.get("offset")) || 0);
}

function writeLocation() {
  const query = new URLSearchParams();
  if (view.status) query.set("status", view.status);
  if (view.offset) query.set("offset", view.offset);
  history.replaceState(null, "", query.toString() ? `?${query}` : location.pathname);
}

async function load() {
  writeLocation();
  $("error").textContent = "";
  let page;
  try {
    const query = new URLSearchParams({offset: view.offset, limit: PAGE});
    if (view.status) query.set("status", view.status);
    page = await api(`/api/items?${query}`);
  } catch (error) {
    $("error").textContent = error.message;
    return;
  }
  $("filters").replaceChildren(...FILTERS
    .filter(([status]) => status !== "decided" || page.counts.decided)
    .map(([status, label]) => el("button", {type: "button",
      class: `quiet${status === view.status ? " active" : ""}`, "data-status": status || "all",
      onclick: () => { view.status = status; view.offset = 0; load(); }},
      `${label} (${page.counts[status || "all"]})`)));
  const last = Math.min(page.total, view.offset + PAGE);
  $("range").textContent = page.total ? `${view.offset + 1}–${last} of ${page.total}` : "no items";
  $("prev").disabled = view.offset === 0;
  $("next").disabled = last >= page.total;
  if (!page.counts.all) {
    $("folder").textContent = "This folder has no run.jsonl yet: run `regionedit batch INPUT_DIR -o OUT_DIR` and serve OUT_DIR.";
  }
  $("items").replaceChildren(...page.items.map(card));
}

function card(item) {
  const node = el("article", {class: `item status-${item.status}`, "data-key": item.key});
  render(node, item);
  return node;
}

function render(node, item) {
  const why = item.region ? `${item.region}${item.decided_by ? ` (${item.decided_by})` : ""}${item.reason ? `: ${item.reason}` : ""}` : "";
  const parts = [el("header", {},
    el("span", {class: "name", text: item.input + (item.line ? ` (line ${item.line})` : "")}),
    el("span", {class: `badge ${item.status}`, text: item.status}),
    item.pick ? el("span", {class: "badge picked", text: `picked seed ${item.pick.seed}`}) : null,
    item.rerun ? el("span", {class: "muted", text: "re-run here"}) : null,
    el("span", {class: "why", text: why}))];
  if (item.source) parts.push(el("p", {class: "muted", text: `“${item.source}” → “${item.target}”`}));
  if (item.status === "failed") {
    parts.push(el("p", {class: "error", text: `${item.error_type || "Error"}${item.stage ? ` in ${item.stage}` : ""}: ${item.error || ""}`}));
  }
  if (item.status === "unidentified") {
    parts.push(el("div", {class: "question"},
      el("p", {text: "Which part should change: the foreground (the main subject) or the background?"}),
      item.can_rerun ? el("div", {class: "row"},
        el("button", {type: "button", "data-answer": "foreground", onclick: () => rerun(node, item, {region: "foreground"})}, "Foreground"),
        el("button", {type: "button", "data-answer": "background", onclick: () => rerun(node, item, {region: "background"})}, "Background"))
        : el("p", {class: "muted", text: "Run the batch again with --region to edit it."})));
  }
  const tiles = [];
  if (item.original) tiles.push(tile(item.original.thumb, "original", null, () => openViewer(item, null)));
  if (item.mask) tiles.push(tile(item.mask.thumb, "mask", null, () => openViewer(item, item.mask.view, "mask")));
  for (const c of item.candidates) {
    const label = `${c.position === 0 ? "output" : `candidate ${c.position}`} · seed ${c.seed}`;
    const action = c.position === 0 ? null
      : el("button", {type: "button", class: "quiet", "data-pick": c.position, onclick: () => pick(node, item, c.position)}, "Pick");
    tiles.push(tile(c.thumb, label, action, () => openViewer(item, c.view, label), c.position === 0 && item.candidates.length > 1));
  }
  if (tiles.length) parts.push(el("div", {class: "tiles"}, tiles));
  if (item.can_rerun) parts.push(rerunForm(node, item));
  node.className = `item status-${item.status}`;
  node.replaceChildren(...parts);
}

function tile(src, label, action, onOpen, chosen = false) {
  return el("figure", {class: chosen ? "chosen" : ""},
    el("img", {src, alt: label, loading: "lazy", onclick: onOpen}),
    el("figcaption", {}, el("span", {text: label}), action));
}

function rerunForm(node, item) {
  const seed = el("input", {type: "number", min: "0", value: String(Math.floor(Math.random() * 2 ** 31)), "aria-label": "seed"});
  const region = el("select", {"aria-label": "region"},
    el("option", {value: ""}, "region as asked"), el("option", {value: "foreground"}, "foreground"),
    el("option", {value: "background"}, "background"));
  const status = el("span", {class: "muted", role: "status"});
  const form = el("form", {class: "rerun row"}, el("label", {text: "Re-run with seed"}), seed, region,
    el("button", {type: "submit", class: "quiet"}, "Re-run"), status);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    rerun(node, item, {seed: Number(seed.value), region: region.value || null}, status);
  });
  return form;
}

async function rerun(node, item, body, status) {
  status = status || node.querySelector(".rerun [role=status]") || el("span");
  for (const button of node.querySelectorAll("button")) button.disabled = true;
  try {
    const job = await api(`/api/items/${item.key}/rerun`, {method: "POST", json: body});
    const updated = await followJob(job, (j) => { status.textContent = jobText(j); });
    render(node, updated);
  } catch (error) {
    status.textContent = "";
    node.querySelector(".rerun") ? node.querySelector(".rerun").append(el("span", {class: "error", text: error.message}))
      : node.append(el("p", {class: "error", text: error.message}));
    for (const button of node.querySelectorAll("button")) button.disabled = false;
  }
}

async function pick(node, item, position) {
  for (const button of node.querySelectorAll("button")) button.disabled = true;
  try {
    render(node, await api(`/api/items/${item.key}/pick`, {method: "POST", json: {candidate: position}}));
  } catch (error) {
    node.append(el("p", {class: "error", text: error.message}));
    for (const button of node.querySelectorAll("button")) button.disabled = false;
  }
}

function openViewer(item, afterUrl, label) {
  const body = $("viewer-body");
  if (!item.original) body.replaceChildren(el("img", {src: afterUrl, alt: label, class: "full"}));
  else if (!afterUrl) body.replaceChildren(el("img", {src: item.original.view, alt: "original"}));
  else body.replaceChildren(comparison(item.original.view, afterUrl, {afterLabel: label}));
  $("viewer").showModal();
}

window.addEventListener("DOMContentLoaded", async () => {
  readLocation();
  $("prev").addEventListener("click", () => { view.offset = Math.max(0, view.offset - PAGE); load(); });
  $("next").addEventListener("click", () => { view.offset += PAGE; load(); });
  try {
    const info = await api("/api/info");
    $("folder").textContent = `Folder: ${info.out_dir}`;
  } catch (error) { /* shown by load() */ }
  load();
});
