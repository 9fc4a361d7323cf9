/* The fine-tune page: loss and learning-rate curves drawn from the metrics API, polled while the job runs.
 * The list of fine-tunes: its Compare button is disabled until two fine-tunes or more are ticked (the form works
 * without this script too; the compare page then says what is missing).
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

function follow(lossEl) {
  const url = lossEl.dataset.finetuneMetrics;
  const lrEl = document.getElementById(lossEl.dataset.lrChart);
  let state = { after: -1, attempt: null, train: {}, evals: {}, lr: {} };

  const reset = (attempt) => {
    state = { after: -1, attempt, train: {}, evals: {}, lr: {} };
  };

  const draw = () => {
    window.LogtuneCharts.lines(lossEl, [
      { name: "train loss", points: sorted(state.train) },
      { name: "eval loss", points: sorted(state.evals) },
    ], { label: "Loss by step", xLabel: "step", empty: "No step reported yet" });
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
