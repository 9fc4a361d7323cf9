/* The fine-tune page: loss and learning-rate curves drawn from the metrics API, polled while the job runs.
 * The list of fine-tunes: its Compare button is disabled until two fine-tunes or more are ticked (the form works
 * without this script too; the compare page then says what is missing).
 * A deployment's snippet (the fine-tune page's Deploy section): its Copy button.
 *
 *   <div id="loss-chart" data-finetune-metrics="/api/v1/finetunes/7/metrics?project=acme" data-lr-chart="lr-chart">
 *
 * The template renders that URL with {% url %}; this file only adds after=. Points are kept by step, so re-reading
 * the last step (the API's next_after does) replaces rather than repeats; a new attempt (a job resumed after
 * its worker died) starts the curves over.
 *
 * Loaded as a module (strict, scoped, deferred), after charts.js, whose window.LogtuneCharts it draws with.
 */

const POLL_MS = 2000;
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

function sorted(byStep) {
  return Object.keys(byStep).map(Number).sort((a, b) => a - b).map((step) => [step, byStep[step]]);
}

// Validation loss this much above its best, after it, reads as overfitting.
const RISE = 0.02;

/* The gap between validation and training loss at each evaluation (the validation loss less the mean training loss
 * of the steps since the evaluation before), the best evaluation after the base model's (step 0), and what they say. */
function overfitting(train, evals) {
  const gap = [];
  let previous = -Infinity;
  evals.forEach(([step, loss]) => {
    const since = train.filter(([s]) => s > previous && s <= step).map(([, v]) => v);
    if (since.length) gap.push([step, loss - since.reduce((a, b) => a + b, 0) / since.length]);
    previous = step;
  });
  const tuned = evals.filter(([step]) => step > 0);
  const best = tuned.reduce((b, p) => (b === null || p[1] < b[1] ? p : b), null);
  if (!best) return { gap, best: null, text: "" };
  const last = tuned[tuned.length - 1];
  let text = `Lowest validation loss ${best[1].toFixed(4)} at step ${best[0]}.`;
  if (last[0] > best[0] && last[1] > best[1] * (1 + RISE)) {
    const rise = ((last[1] / best[1] - 1) * 100).toFixed(1);
    text += ` It has risen ${rise}% since (step ${last[0]}: ${last[1].toFixed(4)}) while the gap to the training loss `
      + "grew: the model is likely overfitting. Early stopping (the early_stopping_patience setting) ends a run "
      + "with its best weights.";
  }
  return { gap, best, text };
}

function follow(lossEl) {
  const url = lossEl.dataset.finetuneMetrics;
  const lrEl = document.getElementById(lossEl.dataset.lrChart);
  let state = { after: -1, attempt: null, train: {}, evals: {}, lr: {} };

  const reset = (attempt) => {
    state = { after: -1, attempt, train: {}, evals: {}, lr: {} };
  };

  const draw = () => {
    const train = sorted(state.train);
    const evals = sorted(state.evals);
    const fit = overfitting(train, evals);
    window.LogtuneCharts.lines(lossEl, [
      { name: "train loss", points: train },
      { name: "eval loss", points: evals },
      { name: "gap (eval − train)", points: fit.gap, dashed: true, colour: 3 },
    ], {
      label: "Loss by step", xLabel: "step", empty: "No step reported yet",
      marks: fit.best ? [{ name: "best", x: fit.best[0], y: fit.best[1], label: `best: step ${fit.best[0]}` }] : [],
    });
    const note = document.getElementById(lossEl.dataset.fitNote || "");
    if (note) note.textContent = fit.text;
    lossEl.dataset.bestStep = fit.best ? String(fit.best[0]) : "";
    if (lrEl) {
      window.LogtuneCharts.lines(lrEl, [{ name: "learning rate", points: sorted(state.lr) }],
        { label: "Learning rate by step", xLabel: "step", empty: "No step reported yet" });
    }
  };

  const poll = async () => {
    const sep = url.includes("?") ? "&" : "?";
    try {
      const response = await fetch(`${url}${sep}after=${state.after}`, {
        credentials: "same-origin", headers: { Accept: "application/json" },
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const body = await response.json();
      if (state.attempt !== null && body.attempt !== state.attempt) {
        reset(body.attempt);
        poll();
        return;
      }
      state.attempt = body.attempt;
      body.points.forEach((p) => {
        if (p.train_loss !== null) state.train[p.step] = p.train_loss;
        if (p.eval_loss !== null) state.evals[p.step] = p.eval_loss;
        if (p.learning_rate !== null) state.lr[p.step] = p.learning_rate;
      });
      state.after = body.next_after;
      draw();
      lossEl.dataset.points = String(Object.keys(state.train).length + Object.keys(state.evals).length);
      if (FINISHED.has(body.status)) lossEl.dataset.finished = "1";
      else setTimeout(poll, POLL_MS);
    } catch {
      setTimeout(poll, POLL_MS * 3);
    }
  };

  poll();
}

function compareForm(form) {
  const button = form.querySelector("[data-compare-button]");
  const update = () => {
    const ticked = form.querySelectorAll('input[name="ids"]:checked').length;
    button.disabled = ticked < 2;
    button.title = ticked < 2 ? "Tick two fine-tunes or more" : `Compare ${ticked} fine-tunes`;
  };
  form.addEventListener("change", update);
  update();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-finetune-metrics]").forEach(follow);
  document.querySelectorAll("[data-compare-form]").forEach(compareForm);
});

// A deployment's snippet: its Copy button puts the code on the clipboard (the button names the element to copy).
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  const source = button && document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent).then(() => { button.textContent = "Copied"; });
});
