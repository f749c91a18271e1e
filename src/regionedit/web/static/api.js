// The API page: the server's own OpenAPI description, listed route by route.
"use strict";

function schemaFields(spec, schema) {
  if (!schema) return "";
  if (schema.$ref) schema = spec.components.schemas[schema.$ref.split("/").pop()];
  if (!schema.properties) return "";
  return Object.entries(schema.properties).map(([name, field]) =>
    `${name}${(schema.required || []).includes(name) ? "" : "?"}`).join(", ");
}

window.addEventListener("DOMContentLoaded", async () => {
  const spec = await api("/openapi.json");
  const rows = [];
  for (const [path, operations] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(operations)) {
      const params = (op.parameters || []).map((p) => `${p.name}${p.required ? "" : "?"}`).join(", ");
      const content = op.requestBody && op.requestBody.content;
      const body = content && (content["application/json"] || content["multipart/form-data"]);
      rows.push(el("div", {class: "endpoint"},
        el("div", {}, el("span", {class: "method", text: method.toUpperCase()}), el("code", {text: path})),
        el("p", {text: op.description || op.summary || ""}),
        params ? el("p", {class: "muted", text: `parameters: ${params}`}) : null,
        body ? el("p", {class: "muted", text: `body: ${schemaFields(spec, body.schema)}`}) : null));
    }
  }
  document.getElementById("endpoints").replaceChildren(...rows);
});
