/* The log explorer's keyboard review and the small behaviours htmx does not cover.
 * List: j/k move, x select, t tag, a add to dataset, enter open, / search, esc leave a field.
 * Detail: j older, k newer, esc back to the list.
 *
 * Loaded as a module (strict, scoped, deferred). */

let currentId = null;

const rows = () => [...document.querySelectorAll("#log-table tbody tr[data-id]")];
const boxes = () => [...document.querySelectorAll("#log-table tbody input[name=ids]")];

function currentRow() {
  return rows().find((row) => row.dataset.id === currentId) || null;
}

function setCurrent(row) {
  rows().forEach((r) => r.classList.toggle("current", r === row));
  currentId = row ? row.dataset.id : null;
  if (row) row.scrollIntoView({ block: "nearest" });
}

function move(step) {
  const all = rows();
  if (!all.length) return;
  const at = all.indexOf(currentRow());
  const next = at < 0 ? (step > 0 ? 0 : all.length - 1) : Math.min(all.length - 1, Math.max(0, at + step));
  setCurrent(all[next]);
}

function selectionChanged() {
  const chosen = boxes().filter((box) => box.checked);
  document.querySelectorAll("[data-selected-count]").forEach((el) => { el.textContent = String(chosen.length); });
  rows().forEach((row) => {
    const box = row.querySelector("input[name=ids]");
    row.classList.toggle("selected", Boolean(box && box.checked));
  });
  const scope = document.querySelector(`#bulk-form input[name=scope][value=${chosen.length ? "selected" : "matching"}]`);
  if (scope) scope.checked = true;
  const all = document.querySelector("#select-page");
  if (all) {
    all.checked = chosen.length > 0 && chosen.length === boxes().length;
    all.indeterminate = chosen.length > 0 && chosen.length < boxes().length;
  }
}

function toggleSelected(row) {
  const box = row && row.querySelector("input[name=ids]");
  if (!box) return;
  box.checked = !box.checked;
  selectionChanged();
}

// The bulk bar shows only the fields its action needs.
function actionChanged() {
  const action = document.querySelector("#bulk-action");
  if (!action) return;
  document.querySelectorAll("#bulk-form [data-for]").forEach((field) => {
    field.hidden = !field.dataset.for.split(" ").includes(action.value);
  });
  const dataset = document.querySelector("#bulk-dataset");
  const name = document.querySelector("#bulk-new-dataset");
  if (dataset && name && action.value === "dataset_add") name.hidden = dataset.value !== "new";
}

function startAction(value, focusSelector) {
  const action = document.querySelector("#bulk-action");
  if (!action) return; // viewers have no bulk bar
  if (!boxes().some((box) => box.checked)) toggleSelected(currentRow());
  action.value = value;
  actionChanged();
  const field = document.querySelector(focusSelector);
  if (field) field.focus();
}

function inField(target) {
  return target.closest && target.closest("input, textarea, select, [contenteditable=true]");
}

function follow(selector) {
  const link = document.querySelector(selector);
  if (link) window.location.href = link.href;
}

document.addEventListener("keydown", (event) => {
  if (event.metaKey || event.ctrlKey || event.altKey) return;
  if (inField(event.target)) {
    if (event.key === "Escape") {
      event.preventDefault(); // leave the field for the keys below, without clearing a search box
      event.target.blur();
    }
    return;
  }
  if (event.key === "Enter" && event.target.closest("a, button, summary")) return; // theirs, not ours
  const onList = Boolean(document.querySelector("#log-table"));
  const keys = onList
    ? {
        j: () => move(1),
        k: () => move(-1),
        x: () => toggleSelected(currentRow()),
        t: () => startAction("tag_add", "#bulk-tags"),
        a: () => startAction("dataset_add", "#bulk-dataset"),
        Enter: () => { const row = currentRow(); if (row) window.location.href = row.dataset.href; },
        "/": () => { const q = document.querySelector("#q"); if (q) { q.focus(); q.select(); } },
        Escape: () => clearPanel(),
      }
    : {
        j: () => follow("[data-key-older]"),
        k: () => follow("[data-key-newer]"),
        Escape: () => follow("[data-key-back]"),
        m: () => { const more = document.querySelector("#more-like-this"); if (more) more.click(); },
      };
  const handler = keys[event.key];
  if (handler) {
    event.preventDefault();
    handler();
  }
});

function clearPanel() {
  const panel = document.querySelector("#bulk-panel");
  if (panel) panel.innerHTML = "";
}

document.addEventListener("change", (event) => {
  const target = event.target;
  // A changed filter reloads the table; the search box does so as it is typed (hx-trigger on #filters).
  // Told here rather than by an htmx trigger filter, which htmx would evaluate as code: the CSP forbids eval.
  if (target.closest("#filters") && target.id !== "q") htmx.trigger(target.form, "logtune:filter-changed");
  if (target.matches("#log-table input[name=ids]")) selectionChanged();
  if (target.matches("#select-page")) {
    boxes().forEach((box) => { box.checked = target.checked; });
    selectionChanged();
  }
  if (target.matches("#bulk-action, #bulk-dataset")) actionChanged();
  if (target.matches("select[data-autosubmit]")) target.form.submit();
});

document.addEventListener("click", (event) => {
  const target = event.target;
  if (target.closest("[data-dismiss]")) {
    clearPanel();
    return;
  }
  // A click on a row (not on its links or boxes) makes it the current one.
  const row = target.closest("#log-table tbody tr[data-id]");
  if (row && !target.closest("a, input, button, label")) setCurrent(row);
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

// Blank filter fields stay out of the URL, so shared and saved views read cleanly.
document.addEventListener("htmx:configRequest", (event) => {
  if (event.detail.verb !== "get") return;
  const data = event.detail.formData;
  for (const key of Array.from(new Set(data.keys()))) {
    const values = data.getAll(key).filter((value) => typeof value !== "string" || value.trim() !== "");
    data.delete(key);
    values.forEach((value) => data.append(key, value));
  }
});

// The confirm button is focused by htmx itself (autofocus), once its form is wired up.
document.addEventListener("htmx:afterSwap", () => {
  // The table was replaced: keep the current row when it is still shown.
  if (rows().length) {
    setCurrent(currentRow());
    selectionChanged();
    actionChanged();
  }
});

document.addEventListener("DOMContentLoaded", () => {
  actionChanged();
  selectionChanged();
});
