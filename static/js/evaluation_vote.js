/* The blind vote page: keys 1, 2 and = press the buttons "1 is better", "2 is better" and "Tie".
 *
 *   <button type="submit" name="choice" value="1" data-vote-key="1">
 *
 * The buttons are plain form posts and work without this file; a key only clicks its button, once.
 *
 * Loaded as a module (strict, scoped, deferred). */

function inField(target) {
  return target.closest && target.closest("input, textarea, select, [contenteditable=true]");
}

document.addEventListener("keydown", (event) => {
  if (event.metaKey || event.ctrlKey || event.altKey || event.repeat || inField(event.target)) return;
  const form = document.getElementById("vote-form");
  if (!form || form.dataset.sent) return;
  const button = Array.from(form.querySelectorAll("button[data-vote-key]")).find((b) => b.dataset.voteKey === event.key);
  if (!button) return;
  event.preventDefault();
  form.dataset.sent = "1"; // a second key before the next page loads would vote on the same example again
  button.click();
});

// A page restored by the back button is voted on again from the keys.
window.addEventListener("pageshow", () => {
  const form = document.getElementById("vote-form");
  if (form) delete form.dataset.sent;
});
