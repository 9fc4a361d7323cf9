/* The review queue of generated rows: a accepts, r rejects, e opens the editor, j / k go to the next or previous
 * row, Ctrl+Enter in the editor accepts the row as edited.
 *
 *   <button type="submit" name="decision" value="accept" data-review-key="a">
 *
 * The buttons and links work without this file; a key only clicks its element, once.
 *
 * Loaded as a module (strict, scoped, deferred). */

function inField(target) {
  return target.closest && target.closest("input, textarea, select, [contenteditable=true]");
}

function send(form, decision) {
  if (form.dataset.sent) return;
  form.dataset.sent = "1"; // a second key before the next page loads would decide the same row again
  form.querySelector(`button[value="${decision}"]`).click();
}

document.addEventListener("keydown", (event) => {
  const form = document.getElementById("review-form");
  if (form && event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.id === "review-messages") {
    event.preventDefault();
    send(form, "accept");
    return;
  }
  if (event.metaKey || event.ctrlKey || event.altKey || event.repeat || inField(event.target)) return;
  if (event.key === "e" && form) {
    event.preventDefault();
    const editor = document.getElementById("review-edit");
    editor.open = true;
    document.getElementById("review-messages").focus();
    return;
  }
  const target = document.querySelector(`[data-review-key="${CSS.escape(event.key)}"]`);
  if (!target) return;
  event.preventDefault();
  if (target.tagName === "BUTTON" && form) send(form, target.value);
  else target.click();
});

// A page restored by the back button takes keys again.
window.addEventListener("pageshow", () => {
  const form = document.getElementById("review-form");
  if (form) delete form.dataset.sent;
});
