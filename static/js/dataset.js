/* Dataset pages: selection in the entries list, confirmations, the editor's role-dependent fields,
 * and JSON answers of the export API (preview of lossy conversions, snapshots) shown as tables.
 *
 * Loaded as a module (strict, scoped, deferred). */

// --- entries list: select all, selected count -------------------------------------------------
function updateCount(form) {
  const label = form.querySelector("[data-selected-count]");
  if (label) label.textContent = `${form.querySelectorAll("input[name=ids]:checked").length} selected`;
}

document.addEventListener("change", (event) => {
  const target = event.target;
  if (target.matches("[data-select-all]")) {
    target.form.querySelectorAll("input[name=ids]").forEach((box) => { box.checked = target.checked; });
  }
  if (target.form && target.form.id === "bulk") updateCount(target.form);
  // The editor shows tool calls for assistant turns and the call id for tool turns.
  if (target.matches(".msg select[name=m-role]")) target.closest(".msg").dataset.role = target.value;
});

// --- confirmations (plain forms and htmx buttons alike) ----------------------------------------
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-confirm]");
  if (button && !button.hasAttribute("hx-post") && !window.confirm(button.dataset.confirm)) {
    event.preventDefault();
  }
});
document.addEventListener("htmx:confirm", (event) => {
  const question = event.detail.elt.dataset.confirm;
  if (!question) return;
  event.preventDefault();
  if (window.confirm(question)) event.detail.issueRequest(true);
});

// --- JSON answers rendered as a small table ------------------------------------------------------
const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
}

function rows(value, prefix, out) {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    Object.keys(value).forEach((key) => rows(value[key], prefix ? `${prefix}.${key}` : key, out));
  } else {
    const shown = Array.isArray(value) ? value.map((v) => (typeof v === "object" ? JSON.stringify(v) : v)).join(", ") : value;
    out.push(`<tr><td>${escapeHtml(prefix)}</td><td class="num">${escapeHtml(shown)}</td></tr>`);
  }
  return out;
}

// What an export would lose: {format, rows_read, rows_written, rows_skipped, lossless, losses: {reason: rows}}.
function previewHtml(body) {
  const head = `<p>${escapeHtml(body.rows_written)} of ${escapeHtml(body.rows_read)} rows written as ` +
    `${escapeHtml(body.format)}${body.lossless ? ", nothing lost." : "."}</p>`;
  const losses = Object.keys(body.losses).map((reason) =>
    `<tr class="problem"><td>${escapeHtml(reason)}</td><td class="num">${escapeHtml(body.losses[reason])}</td></tr>`);
  return head + (losses.length ? `<table>${losses.join("")}</table>` : "");
}

function snapshotHtml(body) {
  return `<p>Frozen <code>${escapeHtml(String(body.sha256).slice(0, 12))}</code>: ${escapeHtml(body.rows_total)}` +
    ` rows (${escapeHtml(body.rows_train)} train, ${escapeHtml(body.rows_validation)} validation). ` +
    `<a href="${escapeHtml(body.download_url)}">Download</a></p>`;
}

function answerHtml(body) {
  if (body && typeof body.losses === "object" && "rows_read" in body) return previewHtml(body);
  if (body && body.sha256 && body.download_url) return snapshotHtml(body);
  return `<table>${rows(body, "", []).join("")}</table>`;
}

function parsedJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

document.addEventListener("htmx:beforeSwap", (event) => {
  const elt = event.detail.requestConfig && event.detail.requestConfig.elt;
  if (!elt || !("jsonView" in elt.dataset)) return;
  const xhr = event.detail.xhr;
  const body = parsedJson(xhr.responseText);
  let html;
  if (xhr.status >= 400) {
    const detail = body && (body.detail || JSON.stringify(body));
    html = `<p class="error">Not available (HTTP ${xhr.status})${detail ? `: ${escapeHtml(detail)}` : ""}</p>`;
  } else if (body === null) {
    html = '<p class="error">The answer was not JSON.</p>';
  } else {
    const title = elt.dataset.jsonView;
    html = (title ? `<div class="json-title">${escapeHtml(title)}</div>` : "") + answerHtml(body);
  }
  event.detail.shouldSwap = true;
  event.detail.isError = false;
  event.detail.serverResponse = html;
});
